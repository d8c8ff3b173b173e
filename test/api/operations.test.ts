/**
 * Operations: /metrics moving after a call, /healthz and /readyz (unready first on shutdown), a real
 * `node dist/main.js` shut down with SIGTERM mid-call, and the API keys CLI.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createDatabase } from '../../dist/db/index.js';
import { createLogger } from '../../dist/log/index.js';
import { decryptStream, unwrapDataKey } from '../../dist/crypto/index.js';
import { simulateTwilioCall } from '../../dist/ingest/twilio/simulator.js';
import { splitChannels, toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, recordingsOfCall, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { freshBucket, freshDatabase, s3Client, s3Peer } from '../support/peers.js';
import { CALLER_HZ, TONE_AMPLITUDE, api, placeCall, recordingPath, until, window } from './support.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const CLI = join(ROOT, 'bin/callvault.js');

let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway();
});

afterAll(async () => {
  await t?.dispose();
});

/** Prometheus text → sample name with labels → value. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parseMetrics(await res.text());
}

function value(samples: Map<string, number>, name: string): number {
  return samples.get(name) ?? 0;
}

describe('/metrics', () => {
  test('every operational series is present and moves after a call', async () => {
    const before = await scrape(t.httpUrl);
    const result = await placeCall(t, { durationMs: 1000 });
    // A refused stream: frames dropped, by reason.
    await placeCall(t, { durationMs: 400, recording: { enabled: true, key: 'hunter2' } });
    const fetched = await api(t, recordingPath(result.callSid));
    expect(fetched.status).toBe(200);
    // The request is measured when the streamed body has been sent, so read it all before scraping.
    await fetched.arrayBuffer();
    await expect
      .poll(async () => value(await scrape(t.httpUrl), 'callvault_http_request_duration_seconds_count{method="GET",route="call_recording_get",status="200"}'))
      .toBeGreaterThan(value(before, 'callvault_http_request_duration_seconds_count{method="GET",route="call_recording_get",status="200"}'));
    const after = await scrape(t.httpUrl);

    const moved: Array<[string, number]> = [
      ['callvault_frames_received_total{source="twilio",track="inbound"}', 50],
      ['callvault_frames_received_total{source="twilio",track="outbound"}', 50],
      ['callvault_received_bytes_total{source="twilio"}', 2 * 50 * 160],
      ['callvault_frames_dropped_total{source="twilio",reason="CLIENT_KEY_WEAK"}', 1],
      ['callvault_pipeline_latency_seconds_count', 100],
      ['callvault_s3_part_upload_duration_seconds_count', 1],
      ['callvault_s3_uploaded_bytes_total', 1000 * 64],
      ['callvault_recording_finalization_seconds_count', 1],
      ['callvault_recordings_started_total', 1],
      ['callvault_recordings_finished_total{status="completed"}', 1],
      ['callvault_streams_closed_total{source="twilio",code="1000"}', 1],
      ['callvault_http_request_duration_seconds_count{method="GET",route="call_recording_get",status="200"}', 1],
    ];
    for (const [name, atLeast] of moved) {
      expect(value(after, name) - value(before, name), name).toBeGreaterThanOrEqual(atLeast);
    }
    const present = [
      'callvault_active_streams{source="twilio"}',
      'callvault_active_recordings',
      'callvault_s3_upload_failures_total',
      'callvault_s3_parts_in_flight',
      'callvault_worker_pool_utilization_ratio',
      'callvault_worker_queue_depth',
      'callvault_nodejs_eventloop_lag_seconds',
      'callvault_process_resident_memory_bytes',
      'callvault_nodejs_heap_size_used_bytes',
      // Final statuses start at 0, so rate() sees the first recording of each.
      'callvault_recordings_finished_total{status="failed"}',
      'callvault_recordings_finished_total{status="interrupted"}',
    ];
    for (const name of present) expect(after.has(name), name).toBe(true);
    expect(value(after, 'callvault_active_streams{source="twilio"}')).toBe(0);
    expect(value(after, 'callvault_process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(value(after, 'callvault_worker_pool_utilization_ratio')).toBeGreaterThan(0);
  });
});

describe('health', () => {
  test('/healthz is alive and /readyz is ready with every check passing', async () => {
    expect(await (await fetch(`${t.httpUrl}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${t.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { accepting: true, workers: true, database: true, storage: true, spool: true },
      uploadBacklog: { recordings: 0, bytes: 0 },
    });
  });

  test.each([
    ['drains: the call in progress carries on to its end', 20_000, 1000],
    ['at the deadline, the call still in progress is finalised and its stream closed with 1001', 1500, 1001],
  ])('/readyz goes unready as soon as shutdown begins; %s', async (_name, shutdownDeadlineMs, closeCode) => {
    const local = await startTestGateway({ shutdownDeadlineMs });
    try {
      const calling = placeCall(local, { durationMs: 5000, realtime: true });
      const row = await until(async () => (await local.gateway.db.recordings.list('acme', { status: 'in_progress', page: 0, limit: 1 })).rows[0], 'a recording');
      // Its row exists before the recording is attached to the call; wait until it is really running.
      await until(() => local.gateway.findLiveRecording('acme', row.id) ?? undefined, 'the recording to run');
      const closing = local.gateway.close();
      expect(local.gateway.acceptingStreams).toBe(false);
      const unready = await fetch(`${local.httpUrl}/readyz`);
      expect(unready.status).toBe(503);
      expect(await unready.json()).toMatchObject({ status: 'unready', checks: { accepting: false } });
      await closing;
      const result = await calling;
      expect(result.closeCode).toBe(closeCode);
      const call = await createDatabase({ url: local.gateway.options.databaseUrl, logger: createLogger({ level: 'silent' }) });
      try {
        const finished = await call.recordings.get('acme', row.id);
        expect(finished).toMatchObject({ status: 'completed' });
        if (closeCode === 1000) expect(finished!.durationMs).toBe(5000);
        else {
          expect(finished!.durationMs).toBeGreaterThanOrEqual(shutdownDeadlineMs - 500);
          expect(finished!.durationMs).toBeLessThan(5000);
        }
      } finally {
        await call.close();
      }
    } finally {
      await local.dispose().catch(() => undefined);
    }
  });
});

describe('SIGTERM', () => {
  test('node dist/main.js drains: the call in progress runs to its end, its whole recording is finalised, and it exits 0', async () => {
    const db = await freshDatabase();
    const bucket = await freshBucket();
    const dataDir = await mkdtemp(join(tmpdir(), 'callvault-main-'));
    const peer = s3Peer();
    const account = testAccount('acme');
    const masterKey = randomBytes(32);
    const child = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
      env: {
        PATH: process.env['PATH'],
        HOST: '127.0.0.1',
        PORT: '0',
        PUBLIC_URL,
        DATA_DIR: dataDir,
        DATABASE_URL: db.url,
        S3_ENDPOINT: peer.endpoint,
        S3_REGION: peer.region,
        S3_BUCKET: bucket,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_ACCESS_KEY_ID: peer.accessKeyId,
        AWS_SECRET_ACCESS_KEY: peer.secretAccessKey,
        MASTER_KEY: masterKey.toString('base64'),
        MASTER_KEY_ID: 'sigterm-test',
        TWILIO_ACCOUNTS: `acme:${account.accountSid}:${account.authToken}`,
        API_KEYS: `acme:acme-sigterm-${randomBytes(12).toString('hex')}`,
        WORKER_THREADS: '1',
        SHUTDOWN_DEADLINE_SECONDS: '20',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let output = '';
    const lines: Record<string, unknown>[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const complete = output.split('\n');
      output = complete.pop() ?? '';
      for (const line of complete) if (line.trim().startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    try {
      const port = await until(() => lines.find((l) => l['msg'] === 'gateway listening')?.['port'] as number | undefined, `the gateway to listen (${stderr})`, 60_000);
      const url = `http://127.0.0.1:${port}`;
      const calling = simulateTwilioCall({
        url: `ws://127.0.0.1:${port}/twilio/media`,
        signedUrl: `${PUBLIC_URL.replace('https', 'wss')}/twilio/media`,
        accountSid: account.accountSid,
        authToken: account.authToken,
        durationMs: 6000,
        realtime: true,
        inbound: { kind: 'tone', frequencyHz: CALLER_HZ, amplitude: TONE_AMPLITUDE },
        outbound: { kind: 'silence' },
        // Two channels, asked for: the shipped default is mono.
        recording: { enabled: true, stereo: true },
      });
      // About a second of media received by the gateway, then the signal.
      const framesBefore = await until(async () => {
        const frames = value(await scrape(url), 'callvault_frames_received_total{source="twilio",track="inbound"}');
        return frames >= 50 ? frames : undefined;
      }, 'a second of media');
      child.kill('SIGTERM');
      const code = await exited;
      const result = await calling;
      expect(code).toBe(0);
      expect(stderr).not.toContain('callvault:');
      // Draining, not cutting: the call carried on to its own end before the process exited.
      expect(result.closeCode).toBe(1000);
      expect(lines.map((l) => l['msg'])).toEqual(expect.arrayContaining(['shutdown requested', 'gateway draining', 'recording completed', 'gateway closed']));

      const reader = createDatabase({ url: db.url, logger: createLogger({ level: 'silent' }) });
      try {
        const page = await reader.recordings.list('acme', { callSid: result.callSid, page: 0, limit: 10 });
        expect(page.rows).toHaveLength(1);
        const row = page.rows[0]!;
        expect(row.status).toBe('completed');
        // Everything the gateway had received before the signal is in, nothing beyond what was sent.
        const framesSentPerTrack = result.framesSent / 2;
        expect(framesBefore * 20).toBeLessThan(6000);
        expect(row.durationMs!).toBe(framesSentPerTrack * 20);
        expect(row.durationMs!).toBe(6000);

        const client = s3Client();
        const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: row.objectKey }));
        const chunks: Uint8Array[] = [];
        for await (const plain of decryptStream(object.Body as AsyncIterable<Uint8Array>, () =>
          unwrapDataKey(new Map([['sigterm-test', masterKey]]), row.keyId!, row.wrappedKey!),
        )) {
          chunks.push(Uint8Array.from(plain));
        }
        client.destroy();
        const [left] = splitChannels(Buffer.concat(chunks), 2);
        expect(left!.length).toBe((row.durationMs! * 16000) / 1000);
        // The caller's tone runs right up to the end: nothing received was cut off.
        const endMs = row.durationMs!;
        expect(toneAmplitude(window(left!, 16000, 100, endMs - 20), 16000, CALLER_HZ)).toBeGreaterThan(TONE_AMPLITUDE * 32767 * 0.9);
        expect(toneAmplitude(window(left!, 16000, endMs - 120, endMs - 20), 16000, CALLER_HZ)).toBeGreaterThan(TONE_AMPLITUDE * 32767 * 0.8);
      } finally {
        await reader.close();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('keys CLI', () => {
  const cli = (args: string[]) =>
    run(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'], DATABASE_URL: t.gateway.options.databaseUrl } }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  test('create, use, list and revoke a key', async () => {
    const created = await cli(['keys', 'create', '--org', 'acme', '--label', 'ci', '--json']);
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string; key: string; prefix: string; org: string; label: string };
    expect(key).toMatchObject({ org: 'acme', label: 'ci', key: expect.stringMatching(/^cvk_[0-9a-f]{12}_/) });

    // The new key works: an unknown call is 404 (authenticated), not 401.
    const unknownCall = recordingPath(`CA${randomBytes(16).toString('hex')}`);
    expect((await api(t, unknownCall, { authorization: `Bearer ${key.key}` })).status).toBe(404);

    const listed = await cli(['keys', 'list', '--org', 'acme', '--json']);
    expect(listed.code).toBe(0);
    const keys = JSON.parse(listed.stdout) as Array<{ id: string; prefix: string; revokedAt: string | null }>;
    expect(keys).toContainEqual(expect.objectContaining({ id: key.id, prefix: key.prefix, revokedAt: null }));
    expect(listed.stdout).not.toContain(key.key);
    const table = await cli(['keys', 'list', '--org', 'acme']);
    expect(table.stdout).toContain(key.prefix);
    expect(table.stdout).not.toContain(key.key);

    const revoked = await cli(['keys', 'revoke', '--org', 'acme', key.id]);
    expect(revoked).toMatchObject({ code: 0, stdout: `revoked ${key.id}\n` });
    expect((await api(t, unknownCall, { authorization: `Bearer ${key.key}` })).status).toBe(401);
    const after = JSON.parse((await cli(['keys', 'list', '--org', 'acme', '--json'])).stdout) as Array<{ id: string; revokedAt: string | null }>;
    expect(after.find((k) => k.id === key.id)?.revokedAt).toEqual(expect.any(String));

    // Revoking again, or another organisation's key, finds nothing.
    expect(await cli(['keys', 'revoke', '--org', 'acme', key.id])).toMatchObject({ code: 1, stderr: expect.stringContaining('NOT_FOUND') });
    const theirs = JSON.parse((await cli(['keys', 'create', '--org', 'globex', '--json'])).stdout) as { id: string; key: string };
    expect(await cli(['keys', 'revoke', '--org', 'acme', theirs.id])).toMatchObject({ code: 1 });
    expect((await api(t, unknownCall, { authorization: `Bearer ${theirs.key}` })).status).toBe(404);
  });

  test('a new organisation gets its key; its calls are its own', async () => {
    const created = JSON.parse((await cli(['keys', 'create', '--org', 'initech', '--json'])).stdout) as { key: string };
    const acmeCall = await placeCall(t, { durationMs: 400 });
    expect((await recordingsOfCall(t, 'acme', acmeCall.callSid)).length).toBe(1);
    expect((await api(t, recordingPath(acmeCall.callSid), { authorization: `Bearer ${created.key}` })).status).toBe(404);
  });

  test.each([
    [['keys', 'create'], 64, '--org is required'],
    [['keys', 'create', '--org', 'Not An Org'], 64, '--org must be'],
    [['keys', 'frobnicate', '--org', 'acme'], 64, 'unknown keys command'],
    [['keys', 'revoke', '--org', 'acme'], 64, 'exactly one key id'],
    [['nonsense'], 64, 'unknown command'],
    [['decrypt', 'in.cvr', 'out.wav'], 64, '--key is required'],
  ])('usage errors exit 64: %j', async (args, code, message) => {
    const result = await cli(args);
    expect(result.code).toBe(code);
    expect(result.stderr).toContain(message);
  });

  test('without DATABASE_URL the keys commands refuse to run (exit 78)', async () => {
    const result = await run(process.execPath, [CLI, 'keys', 'list', '--org', 'acme'], { env: { PATH: process.env['PATH'] } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('DATABASE_URL');
  });
});
