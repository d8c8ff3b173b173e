/**
 * `/api/call-recordings`: listing with 1-based pages and filters over 100,000 recordings of one organisation,
 * one recording with every field and its call, its media, its deletion, and organisation scoping.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { listBucket, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { apiKeyOf, placeCall, sha256, storeRecording } from '../api/support.js';
import { apiJson } from './support.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';

const SEEDED = 100_000;
const BASE = Date.parse('2030-01-01T00:00:00Z');
let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway({ accounts: [testAccount('acme'), testAccount('globex'), testAccount('bulk')] });
  const client = new pg.Client({ connectionString: t.gateway.options.databaseUrl });
  await client.connect();
  try {
    // Three calls; recording i starts at BASE + i s, on call i % 3, status and source cycling.
    await client.query(`INSERT INTO calls (org_id, source, external_id, status, started_at, ended_at)
      SELECT 'bulk', 'twilio', 'CA' || lpad(to_hex(c), 32, '0'), 'ended', $1::timestamptz, $1::timestamptz FROM generate_series(0, 2) c`, [new Date(BASE)]);
    await client.query(
      `INSERT INTO recordings (recording_sid, org_id, call_id, status, source, channels, sample_rate, format, media_type,
         duration_ms, size_bytes, bucket, object_key, key_mode, error_code, started_at, ended_at)
       SELECT 'CR' || lpad(to_hex(i), 32, '0'), 'bulk',
         (SELECT id FROM calls WHERE org_id = 'bulk' AND external_id = 'CA' || lpad(to_hex(i % 3), 32, '0')),
         (ARRAY['completed', 'failed', 'in_progress'])[i % 3 + 1],
         (ARRAY['gateway', 'livekit', 'twilio', 'elevenlabs'])[i % 4 + 1],
         2, 16000, 'cvr1', 'application/vnd.callvault.recording',
         CASE WHEN i % 3 = 0 THEN 1000 END, CASE WHEN i % 3 = 0 THEN 100 END, 'seeded', 'bulk/' || i, 'client',
         CASE WHEN i % 3 = 1 THEN 'UPLOAD_FAILED' END,
         $1::timestamptz + i * interval '1 second', CASE WHEN i % 3 <> 2 THEN $1::timestamptz + i * interval '1 second' END
       FROM generate_series(1, $2::int) i`,
      [new Date(BASE), SEEDED],
    );
    await client.query('ANALYZE recordings');
  } finally {
    await client.end();
  }
}, 120_000);
afterAll(async () => {
  await t?.dispose();
});

const sidOf = (i: number) => `CR${i.toString(16).padStart(32, '0')}`;
const callSidOf = (c: number) => `CA${c.toString(16).padStart(32, '0')}`;

async function list(query: string, org = 'bulk') {
  const res = await apiJson(t, 'GET', `/api/call-recordings${query}`, undefined, org);
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe('listing 100,000 recordings', () => {
  test('defaults: page 1 of 20, newest first, with the page count', async () => {
    const { status, body } = await list('');
    expect(status).toBe(200);
    expect(body).toMatchObject({ success: true, count: 20, total: SEEDED, page: 1, pages: SEEDED / 20 });
    expect(body['recordings'].map((r: { recordingSid: string }) => r.recordingSid)).toEqual(Array.from({ length: 20 }, (_, k) => sidOf(SEEDED - k)));
    expect(body['recordings'][0]).toMatchObject({ callSid: callSidOf(SEEDED % 3), status: 'failed', errorCode: 'UPLOAD_FAILED', source: 'gateway' });
  });

  test('a deep page is correct and answers quickly', async () => {
    const started = performance.now();
    const { body } = await list('?page=999&limit=100');
    const ms = performance.now() - started;
    console.log(`page 999 of 1000 (limit 100) over ${SEEDED} recordings answered in ${ms.toFixed(1)} ms`);
    expect(body).toMatchObject({ count: 100, total: SEEDED, page: 999, pages: 1000 });
    // Page p (1-based) of 100 holds recordings SEEDED - 100(p-1) down to SEEDED - 100p + 1.
    expect(body['recordings'].map((r: { recordingSid: string }) => r.recordingSid)).toEqual(Array.from({ length: 100 }, (_, k) => sidOf(200 - k)));
    expect(ms).toBeLessThan(2000);
  });

  test('consecutive pages neither overlap nor skip', async () => {
    const seen: string[] = [];
    for (let page = 1; page <= 3; page++) seen.push(...(await list(`?page=${page}&limit=7`)).body['recordings'].map((r: { recordingSid: string }) => r.recordingSid));
    expect(seen).toEqual(Array.from({ length: 21 }, (_, k) => sidOf(SEEDED - k)));
    expect((await list(`?page=${SEEDED}&limit=100`)).body).toMatchObject({ count: 0, total: SEEDED, recordings: [] });
  });

  test.each([
    ['status=failed', (i: number) => i % 3 === 1],
    ['source=twilio', (i: number) => i % 4 === 2],
    [`callSid=${callSidOf(2)}`, (i: number) => i % 3 === 2],
    ['status=completed&source=gateway', (i: number) => i % 3 === 0 && i % 4 === 0],
    [`fromDate=${new Date(BASE + 1_000_000).toISOString()}&toDate=${new Date(BASE + 1_050_000).toISOString()}`, (i: number) => i >= 1000 && i < 1050],
    [`fromDate=${new Date(BASE + 50_000_000).toISOString()}&status=in-progress`, (i: number) => i >= 50_000 && i % 3 === 2],
    // The stored spelling is still accepted as a filter.
    [`fromDate=${new Date(BASE + 50_000_000).toISOString()}&status=in_progress`, (i: number) => i >= 50_000 && i % 3 === 2],
  ])('filter %s', async (filter, matches) => {
    const expected = Array.from({ length: SEEDED }, (_, k) => SEEDED - k).filter(matches);
    const { body } = await list(`?${filter}&limit=50&page=2`);
    expect(body['total']).toBe(expected.length);
    expect(body['pages']).toBe(Math.ceil(expected.length / 50));
    expect(body['recordings'].map((r: { recordingSid: string }) => r.recordingSid)).toEqual(expected.slice(50, 100).map(sidOf));
  });

  test.each([
    ['page=0'],
    ['limit=101'],
    ['limit=0'],
    ['page=abc'],
    ['status=done'],
    ['source=zoom'],
    ['fromDate=yesterday'],
    ['toDate=2030-13-45'],
  ])('%s is 400 BAD_REQUEST', async (query) => {
    const { status, body } = await list(`?${query}`);
    expect(status).toBe(400);
    expect(body['error'].code).toBe('BAD_REQUEST');
  });

  test("another organisation sees none of them", async () => {
    const { body } = await list(`?callSid=${callSidOf(1)}`, 'globex');
    expect(body).toMatchObject({ total: 0, count: 0, pages: 0 });
  });
});

describe('one recording', () => {
  const pcm = randomBytes(16000 * 2 * 2); // 1 s of stereo 16 kHz noise

  test('by id and by recording SID: every field, its call, and its media', async () => {
    const stored = await storeRecording(t, { pcm });
    const bySid = await apiJson(t, 'GET', `/api/call-recordings/${(await t.gateway.db.recordings.get('acme', stored.recordingId))!.recordingSid}`);
    const byId = await apiJson(t, 'GET', `/api/call-recordings/${stored.recordingId}`);
    const a = (await bySid.json()) as Record<string, any>;
    const b = (await byId.json()) as Record<string, any>;
    expect(a).toEqual(b);
    const rec = a['recording'];
    expect(rec).toMatchObject({
      id: stored.recordingId,
      callSid: stored.callSid,
      status: 'completed',
      duration: 1,
      durationMs: 1000,
      source: 'gateway',
      channels: 2,
      sampleRate: 16000,
      format: 'wav',
      container: 'cvr1',
      mediaType: 'audio',
      contentType: 'audio/wav',
      size: stored.objectSize,
      keyMode: 'server',
      url: `https://rec.example.test/api/call-recordings/${rec.recordingSid}/media`,
      call: { callSid: stored.callSid, source: 'twilio', status: 'active' },
    });
    for (const field of ['mediaType', 'startTime', 'endTime', 'metadata', 'createdAt', 'updatedAt']) expect(rec).toHaveProperty(field);
    const media = await apiJson(t, 'GET', `/api/call-recordings/${rec.recordingSid}/media`);
    expect(media.status).toBe(200);
    expect(media.headers.get('content-type')).toBe('audio/wav');
    expect(sha256(new Uint8Array(await media.arrayBuffer()))).toBe(sha256(stored.wav));
    const ranged = await fetch(`${t.httpUrl}/api/call-recordings/${rec.recordingSid}/media`, {
      headers: { authorization: `Bearer ${apiKeyOf(t, 'acme')}`, range: 'bytes=44-143' },
    });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer())).toEqual(Buffer.from(stored.wav.subarray(44, 144)));
  });

  test.each([
    [1600, 2],
    [1400, 1],
    [250, 0],
  ])('duration is whole seconds (%i ms -> %i s), durationMs exact, statuses hyphenated', async (ms, seconds) => {
    const stored = await storeRecording(t, { pcm: randomBytes((16000 * 2 * 2 * ms) / 1000) });
    const rec = ((await (await apiJson(t, 'GET', `/api/call-recordings/${stored.recordingId}`)).json()) as Record<string, any>)['recording'];
    expect(rec).toMatchObject({ duration: seconds, durationMs: ms, status: 'completed', format: 'wav', mediaType: 'audio' });
    expect(Number.isInteger(rec.duration)).toBe(true);
  });

  test.each([['in progress'], ['in-progress_'], ['IN-PROGRESS'], ['in_progress-']])('an unknown status filter %j is a 400', async (status) => {
    const res = await apiJson(t, 'GET', `/api/call-recordings?status=${encodeURIComponent(status)}`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'BAD_REQUEST', details: { allowed: ['in-progress', 'uploading', 'interrupted', 'completed', 'failed'] } } });
  });

  test('a client-key recording redirects to the encrypted object', async () => {
    const call = await placeCall(t, { durationMs: 300, recording: { enabled: true, key: randomBytes(32).toString('hex') } });
    await expect.poll(async () => (await list(`?callSid=${call.callSid}&status=completed`, 'acme')).body['total']).toBe(1);
    const [row] = (await list(`?callSid=${call.callSid}`, 'acme')).body['recordings'];
    const res = await apiJson(t, 'GET', `/api/call-recordings/${row.recordingSid}/media`);
    expect(res.status).toBe(302);
    const stored = await t.gateway.db.recordings.get('acme', row.recordingSid);
    expect(new URL(res.headers.get('location')!).pathname).toBe(`/${t.bucket}/${stored!.objectKey}`);
  });

  test('DELETE removes the object and the metadata; again is 404', async () => {
    const stored = await storeRecording(t, { pcm });
    expect((await listBucket(t.bucket)).objects).toContain(stored.objectKey);
    expect((await apiJson(t, 'DELETE', `/api/call-recordings/${stored.recordingId}`)).status).toBe(204);
    expect((await listBucket(t.bucket)).objects).not.toContain(stored.objectKey);
    expect(await t.gateway.db.recordings.get('acme', stored.recordingId)).toBeNull();
    expect((await apiJson(t, 'DELETE', `/api/call-recordings/${stored.recordingId}`)).status).toBe(404);
    expect((await apiJson(t, 'GET', `/api/call-recordings/${stored.recordingId}`)).status).toBe(404);
  });

  test("another organisation's recording is 404 on every route, and stays intact", async () => {
    const stored = await storeRecording(t, { pcm });
    for (const [method, path] of [
      ['GET', `/api/call-recordings/${stored.recordingId}`],
      ['GET', `/api/call-recordings/${stored.recordingId}/media`],
      ['DELETE', `/api/call-recordings/${stored.recordingId}`],
    ] as const) {
      const res = await apiJson(t, method, path, undefined, 'globex');
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 404 });
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    }
    expect((await listBucket(t.bucket)).objects).toContain(stored.objectKey);
    expect((await apiJson(t, 'GET', `/api/call-recordings/${stored.recordingId}/media`)).status).toBe(200);
  });

  test('unauthenticated requests are 401', async () => {
    const res = await fetch(`${t.httpUrl}/api/call-recordings`);
    expect(res.status).toBe(401);
  });
});

test('every status the routes answered in this file is documented in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
