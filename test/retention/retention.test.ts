/**
 * Retention against a real gateway (uWS, workers, PostgreSQL, MinIO): the organisation's period set and read
 * through /api/retention (admin scope to set), and the sweeper run with an injected clock: a recording that
 * ended more than the period before "now" is deleted everywhere (S3 object, spool checkpoints, spool, row, the
 * call's transcript and events), logged with its ids and counted; a newer one, an in-progress one and another organisation's stay.
 */
import { randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { retentionSweeperOf, RetentionSweeper } from '../../dist/bootstrap/wiring.js';
import type { Recording as RecordingRow } from '../../dist/db/index.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { s3Client } from '../support/peers.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { api, apiKeyOf, placeCall, recordingPath, spoolFilesOf, storeRecording, until } from '../api/support.js';

const DAY_MS = 86_400_000;
let t: TestGateway;

function send(method: string, path: string, body: unknown, key: string): Promise<Response> {
  return fetch(`${t.httpUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
}

async function completedRecording(org: string, callSid: string): Promise<RecordingRow> {
  return until(async () => (await t.gateway.db.recordings.list(org, { callSid, status: 'completed', page: 0, limit: 1 })).rows[0], `the completed recording of ${callSid}`);
}

async function objectExists(key: string): Promise<boolean> {
  const client = s3Client();
  try {
    await client.send(new HeadObjectCommand({ Bucket: t.bucket, Key: key }));
    return true;
  } catch (err) {
    if ((err as { name?: string }).name === 'NotFound') return false;
    throw err;
  } finally {
    client.destroy();
  }
}

/** Keys under a prefix of the test bucket. */
async function keysUnder(prefix: string): Promise<string[]> {
  const client = s3Client();
  try {
    const page = await client.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => o.Key!).sort();
  } finally {
    client.destroy();
  }
}

async function deletionCount(): Promise<number> {
  const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('callvault_retention_deletions_total{outcome="deleted"}'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

beforeAll(async () => {
  t = await startTestGateway({ retention: { enabled: false } });
});

afterAll(async () => {
  await t?.dispose();
});

describe('/api/retention', () => {
  test('unset by default; PUT { days } sets it for the organisation only, GET reads it, null clears it', async () => {
    const acme = apiKeyOf(t, 'acme');
    expect(await (await api(t, '/api/retention')).json()).toEqual({ success: true, retention: { days: null } });
    const put = await send('PUT', '/api/retention', { days: 30 }, acme);
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ success: true, retention: { days: 30 } });
    expect((await (await api(t, '/api/retention')).json()).retention).toEqual({ days: 30 });
    expect((await (await api(t, '/api/retention', { org: 'globex' })).json()).retention).toEqual({ days: null });
    expect((await (await send('PUT', '/api/retention', { days: null }, acme)).json()).retention).toEqual({ days: null });
    expect((await (await api(t, '/api/retention')).json()).retention).toEqual({ days: null });
    expect(t.logs.find('retention period set').map((l) => l['days'])).toEqual([30, null]);
  });

  test.each([
    ['zero days', { days: 0 }, 'days'],
    ['a fraction', { days: 1.5 }, 'days'],
    ['a string', { days: '30' }, 'days'],
    ['more than 100 years', { days: 36_501 }, 'days'],
    ['no days', {}, 'days'],
    ['an unknown field', { days: 3, keep: true }, '(body)'],
  ])('%s is a 400 naming the field', async (_what, body, field) => {
    const res = await send('PUT', '/api/retention', body, apiKeyOf(t, 'acme'));
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.details.issues.some((i: string) => i.startsWith(`${field}:`))).toBe(true);
  });

  test('setting it takes the admin scope and an organisation-wide key (403); reading takes read', async () => {
    const db = t.gateway.db;
    const noAdmin = (await db.apiKeys.create('acme', { scopes: ['read', 'control', 'delete'] })).key;
    const denied = await send('PUT', '/api/retention', { days: 7 }, noAdmin);
    expect(denied.status).toBe(403);
    expect((await denied.json()).error).toMatchObject({ code: 'FORBIDDEN', details: { requiredScope: 'admin' } });
    const userBound = (await db.apiKeys.create('acme', { scopes: ['read', 'admin'], userId: 'u-1' })).key;
    const bound = await send('PUT', '/api/retention', { days: 7 }, userBound);
    expect(bound.status).toBe(403);
    expect((await bound.json()).error.details).toMatchObject({ userBound: true });
    const controlOnly = (await db.apiKeys.create('acme', { scopes: ['control'] })).key;
    expect((await fetch(`${t.httpUrl}/api/retention`, { headers: { authorization: `Bearer ${controlOnly}` } })).status).toBe(403);
    expect((await fetch(`${t.httpUrl}/api/retention`)).status).toBe(401);
    expect(await db.organisations.retentionDays('acme')).toBeNull();
  });
});

describe('the sweeper', () => {
  test('deletes what ended more than the period before now, everywhere; keeps the newer, the in-progress and another organisation’s', async () => {
    const db = t.gateway.db;
    // Another organisation's recording, the oldest of all; globex keeps its recordings forever.
    const globexCall = await placeCall(t, { durationMs: 400 }, 'globex');
    const globex = await completedRecording('globex', globexCall.callSid);
    // The old one: a real call with a transcript and a function call posted by the bot.
    const old = await placeCall(t, { durationMs: 600 });
    const oldRow = await completedRecording('acme', old.callSid);
    const key = apiKeyOf(t, 'acme');
    expect(
      (await send('POST', `/calls/${old.callSid}/transcript`, { entries: [{ timestamp: '2026-12-01T10:00:00.000001Z', channel: 'caller', type: 'input', text: 'Hello', confidence: 0.9, duration_ms: 300 }] }, key)).status,
    ).toBe(201);
    expect(
      (await send('POST', `/calls/${old.callSid}/events`, { events: [{ type: 'function_call', timestamp: '2026-12-01T10:00:01Z', function_name: 'lookup', arguments: {}, result: {}, call_id: 'c1' }] }, key)).status,
    ).toBe(201);
    expect(await db.artifacts.transcript(oldRow.callId!)).toHaveLength(1);
    // The newer one: ended after the old one.
    const newer = await storeRecording(t, { pcm: new Uint8Array(3200) });
    const newerRow = (await db.recordings.get('acme', newer.recordingId))!;
    expect(newerRow.endedAt!.getTime()).toBeGreaterThan(oldRow.endedAt!.getTime());
    // In progress since long ago (a crashed instance's row): never the sweeper's.
    const liveSid = `CA${randomBytes(16).toString('hex')}`;
    const liveCall = await db.calls.upsertActive({ orgId: 'acme', source: 'twilio', externalId: liveSid, startedAt: new Date(Date.UTC(2020, 0, 1)) });
    const live = await db.recordings.create({
      orgId: 'acme',
      callId: liveCall.id,
      source: 'gateway',
      channels: 2,
      sampleRate: 16000,
      format: 'cvr1',
      mediaType: 'application/vnd.callvault.recording',
      bucket: t.bucket,
      objectKey: `acme/live/${liveSid}.cvr`,
      keyMode: 'server',
      keyId: 'test-key-1',
      wrappedKey: new Uint8Array(61),
      startedAt: new Date(Date.UTC(2020, 0, 1)),
    });

    // The old one had spool checkpoints in S3 (SPOOL_CHECKPOINT_SECONDS, as a checkpointing gateway leaves them).
    const checkpointClient = s3Client();
    for (const name of ['00000000.journal-part', '00000001.journal-part', 'manifest.json']) {
      await checkpointClient.send(new PutObjectCommand({ Bucket: t.bucket, Key: `checkpoints/${oldRow.id}/${name}`, Body: 'x' }));
    }
    checkpointClient.destroy();
    await db.recordings.markCheckpointed(oldRow.id);
    expect(await keysUnder(`checkpoints/${oldRow.id}/`)).toHaveLength(3);

    expect((await send('PUT', '/api/retention', { days: 30 }, key)).status).toBe(200);
    const sweeper = retentionSweeperOf(t.gateway);
    // "Now" 30 days after the old one ended plus half the gap to the newer one: only the old one is past the period.
    const cutoff = oldRow.endedAt!.getTime() + 30 * DAY_MS;
    const now = new Date(cutoff + Math.floor((newerRow.endedAt!.getTime() - oldRow.endedAt!.getTime()) / 2));
    expect((await sweeper.sweepOnce(new Date(cutoff - 1))).deleted).toEqual([]);
    const before = await deletionCount();

    const swept = await sweeper.sweepOnce(now);
    expect(swept).toEqual({ deleted: [{ orgId: 'acme', recordingId: oldRow.id, recordingSid: oldRow.recordingSid, callId: oldRow.callId }], failed: 0 });
    // Gone: row, object, spool, the call's transcript and events; the API says so.
    expect(await db.recordings.get('acme', oldRow.id)).toBeNull();
    expect(await objectExists(oldRow.objectKey)).toBe(false);
    expect(await spoolFilesOf(t, oldRow.id)).toEqual([]);
    expect(await keysUnder(`checkpoints/${oldRow.id}/`)).toEqual([]);
    expect(await db.artifacts.transcript(oldRow.callId!)).toEqual([]);
    expect(await db.artifacts.events(oldRow.callId!)).toEqual([]);
    expect((await api(t, recordingPath(old.callSid))).status).toBe(404);
    expect((await api(t, `/api/call-recordings/${oldRow.recordingSid}`)).status).toBe(404);
    const logged = t.logs.find('recording deleted by retention');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ orgId: 'acme', recordingId: oldRow.id, recordingSid: oldRow.recordingSid, callId: oldRow.callId });
    expect(await deletionCount()).toBe(before + 1);

    // Kept: the newer one (served as before), the in-progress one, globex's.
    const served = await api(t, recordingPath(newer.callSid));
    expect(served.status).toBe(200);
    expect(Buffer.from(await served.arrayBuffer()).equals(Buffer.from(newer.wav))).toBe(true);
    expect(await objectExists(newer.objectKey)).toBe(true);
    expect((await db.recordings.get('acme', live.id))?.status).toBe('in_progress');
    expect(await db.recordings.get('globex', globex.id)).not.toBeNull();
    expect(await objectExists(globex.objectKey)).toBe(true);

    // Years later: the newer one goes too; globex's (no period) and the in-progress one still stay.
    const later = await sweeper.sweepOnce(new Date(now.getTime() + 3650 * DAY_MS));
    expect(later.deleted.map((d) => d.recordingId)).toEqual([newer.recordingId]);
    expect(await objectExists(newer.objectKey)).toBe(false);
    expect((await db.recordings.get('acme', live.id))?.status).toBe('in_progress');
    expect(await db.recordings.get('globex', globex.id)).not.toBeNull();
    expect(await deletionCount()).toBe(before + 2);
    expect((await send('PUT', '/api/retention', { days: null }, key)).status).toBe(200);
  }, 60_000);

  test('start() sweeps on its schedule with its clock; a failed deletion is logged, counted and left for the next sweep; close() stops it', async () => {
    const db = t.gateway.db;
    // An organisation of its own, so nothing the other tests stored is due.
    await db.organisations.ensure('initech');
    expect(await db.organisations.setRetentionDays('initech', 1)).toBe(1);
    const stored = await storeRecording(t, { org: 'initech', pcm: new Uint8Array(1600) });
    let task: (() => void) | null = null;
    let stopped = false;
    let clock = Date.now();
    const seen: string[] = [];
    let failNext = true;
    const logger = t.gateway.options.logger;
    const sweeper = new RetentionSweeper({
      db,
      remove: async (orgId, row) => {
        seen.push(row.id);
        if (failNext) {
          failNext = false;
          throw new Error('storage said no');
        }
        expect(orgId).toBe('initech');
        await db.recordings.delete(orgId, row.id);
      },
      logger: logger.child({ component: 'retention-test' }),
      metrics: t.gateway.metrics,
      now: () => clock,
      intervalMs: 1234,
      scheduler: (run, intervalMs) => {
        expect(intervalMs).toBe(1234);
        task = run;
        return () => {
          stopped = true;
        };
      },
    });
    sweeper.start();
    expect(task).not.toBeNull();
    task!();
    await sweeper.sweepOnce(new Date(clock)); // joins the scheduled run
    expect(seen).toEqual([]);
    clock += 2 * DAY_MS;
    task!();
    const first = await sweeper.sweepOnce(new Date(clock));
    expect(first).toEqual({ deleted: [], failed: 1 });
    expect(seen).toEqual([stored.recordingId]);
    expect(t.logs.find('retention deletion failed').at(-1)).toMatchObject({ orgId: 'initech', recordingId: stored.recordingId });
    expect(await db.recordings.get('initech', stored.recordingId)).not.toBeNull();
    task!();
    await expect.poll(async () => db.recordings.get('initech', stored.recordingId)).toBeNull();
    await sweeper.close();
    expect(stopped).toBe(true);
  });

  test('every status the retention routes answered is documented', async () => {
    expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
  });
});
