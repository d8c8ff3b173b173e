/**
 * GET/HEAD /calls/:callId/recording against a real gateway (uWS, workers, PostgreSQL, MinIO): the audio
 * in the served WAV, Range and HEAD, client key mode's redirect decrypted with the CLI, expired URLs,
 * in-progress recordings (409 and ?live=1), organisation scoping and authentication.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import {
  AGENT_HZ,
  CALLER_HZ,
  TONE_AMPLITUDE,
  api,
  decodeWav,
  inProgressRecording,
  placeCall,
  recordingPath,
  spoolFilesOf,
  until,
  window,
} from './support.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../bin/callvault.js');
const EXPECTED = TONE_AMPLITUDE * 32767;

let t: TestGateway;
let clockOffsetMs = 0;
let work: string;
/** A completed 3 s server-key call of acme, and its whole WAV as served. */
let serverCall: string;
let fullWav: Uint8Array;

beforeAll(async () => {
  t = await startTestGateway({ now: () => Date.now() + clockOffsetMs });
  work = await mkdtemp(join(tmpdir(), 'callvault-api-'));
  const result = await placeCall(t, { durationMs: 3000 });
  expect(result.closeCode).toBe(1000);
  serverCall = result.callSid;
  const res = await api(t, recordingPath(serverCall));
  expect(res.status).toBe(200);
  fullWav = new Uint8Array(await res.arrayBuffer());
});

afterAll(async () => {
  await t?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
});

function expectTones(wav: { channelSamples: Int16Array[]; sampleRate: number }, fromMs: number, toMs: number): void {
  const [left, right] = wav.channelSamples as [Int16Array, Int16Array];
  const l = window(left, wav.sampleRate, fromMs, toMs);
  const r = window(right, wav.sampleRate, fromMs, toMs);
  expect(toneAmplitude(l, wav.sampleRate, CALLER_HZ)).toBeGreaterThan(EXPECTED * 0.9);
  expect(toneAmplitude(l, wav.sampleRate, AGENT_HZ)).toBeLessThan(EXPECTED * 0.01);
  expect(toneAmplitude(r, wav.sampleRate, AGENT_HZ)).toBeGreaterThan(EXPECTED * 0.9);
  expect(toneAmplitude(r, wav.sampleRate, CALLER_HZ)).toBeLessThan(EXPECTED * 0.01);
}

describe('server key mode', () => {
  test('serves the recording as a WAV with the caller left, the agent right, for the whole call', async () => {
    const wav = decodeWav(fullWav);
    expect(wav).toMatchObject({ sampleRate: 16000, channels: 2, dataBytes: 3 * 16000 * 4 });
    expectTones(wav, 200, 2800);
    // The same PCM the object holds, decrypted independently of the API.
    const [row] = await recordingsOfCall(t, 'acme', serverCall);
    const direct = await fetchRecording(t, row!);
    expect(Buffer.from(wav.channelSamples[0]!.buffer).equals(Buffer.from(direct.channelSamples[0]!.buffer))).toBe(true);
    expect(Buffer.from(wav.channelSamples[1]!.buffer).equals(Buffer.from(direct.channelSamples[1]!.buffer))).toBe(true);
  });

  test('answers with the WAV headers', async () => {
    const res = await api(t, recordingPath(serverCall));
    await res.arrayBuffer();
    const [row] = await recordingsOfCall(t, 'acme', serverCall);
    expect(res.headers.get('content-type')).toBe('audio/wav');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('content-length')).toBe(String(fullWav.length));
    expect(res.headers.get('x-recording-sid')).toBe(row!.recordingSid);
    expect(res.headers.get('cache-control')).toContain('no-store');
  });

  test('HEAD gives the same headers and no body', async () => {
    const res = await api(t, recordingPath(serverCall), { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(fullWav.length));
    expect(res.headers.get('content-type')).toBe('audio/wav');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  const SEGMENT = 16384;
  test.each<[string, (size: number) => string, (size: number) => [number, number]]>([
    ['the first byte', () => 'bytes=0-0', () => [0, 0]],
    ['the WAV header only', () => 'bytes=0-43', () => [0, 43]],
    ['across the WAV header into the PCM', () => 'bytes=10-1000', () => [10, 1000]],
    ['the first PCM byte', () => 'bytes=44-44', () => [44, 44]],
    ['mid-segment, inside one segment', () => 'bytes=5000-5001', () => [5000, 5001]],
    ['mid-segment across a segment boundary', () => `bytes=${44 + SEGMENT - 100}-${44 + SEGMENT + 100}`, () => [44 + SEGMENT - 100, 44 + SEGMENT + 100]],
    ['several whole segments from mid-segment', () => `bytes=${44 + 3 * SEGMENT + 7}-${44 + 6 * SEGMENT + 3}`, () => [44 + 3 * SEGMENT + 7, 44 + 6 * SEGMENT + 3]],
    ['the last byte', (size) => `bytes=${size - 1}-${size - 1}`, (size) => [size - 1, size - 1]],
    ['a suffix', () => 'bytes=-1000', (size) => [size - 1000, size - 1]],
    ['an open end from mid-segment', () => 'bytes=100000-', (size) => [100000, size - 1]],
    ['an end past the size (clamped)', (size) => `bytes=${size - 10}-${size + 5000}`, (size) => [size - 10, size - 1]],
  ])('Range %s: 206 with exactly those bytes of the full WAV', async (_name, header, expected) => {
    const size = fullWav.length;
    const [start, end] = expected(size);
    const res = await api(t, recordingPath(serverCall), { headers: { range: header(size) } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${size}`);
    expect(res.headers.get('content-length')).toBe(String(end - start + 1));
    const body = new Uint8Array(await res.arrayBuffer());
    expect(Buffer.from(body).equals(Buffer.from(fullWav.subarray(start, end + 1)))).toBe(true);
  });

  test('HEAD with a Range gives the partial headers', async () => {
    const res = await api(t, recordingPath(serverCall), { method: 'HEAD', headers: { range: 'bytes=100-199' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 100-199/${fullWav.length}`);
    expect(res.headers.get('content-length')).toBe('100');
  });

  test('a range starting past the end is 416 with the size', async () => {
    const res = await api(t, recordingPath(serverCall), { headers: { range: `bytes=${fullWav.length}-` } });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe(`bytes */${fullWav.length}`);
    expect(await res.json()).toMatchObject({ error: { code: 'RANGE_NOT_SATISFIABLE' } });
  });

  test.each(['bytes=5-1', 'items=0-10', 'bytes=0-10,20-30'])('an unusable Range (%s) is ignored: the whole file', async (range) => {
    const res = await api(t, recordingPath(serverCall), { headers: { range } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(fullWav))).toBe(true);
  });
});

describe('client key mode', () => {
  const clientKey = randomBytes(32).toString('base64');
  let callSid: string;

  beforeAll(async () => {
    const result = await placeCall(t, { recording: { enabled: true, key: clientKey } });
    expect(result.closeCode).toBe(1000);
    callSid = result.callSid;
  });

  test('redirects to a presigned URL of the encrypted object, valid for the configured lifetime', async () => {
    const res = await api(t, recordingPath(callSid));
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    const [row] = await recordingsOfCall(t, 'acme', callSid);
    expect(location.pathname).toBe(`/${t.bucket}/${row!.objectKey}`);
    expect(location.searchParams.get('X-Amz-Expires')).toBe('300');
    // Following the redirect gives the object byte for byte.
    const followed = await api(t, recordingPath(callSid), { redirect: 'follow' });
    expect(followed.status).toBe(200);
    const object = new Uint8Array(await followed.arrayBuffer());
    expect(object.length).toBe(row!.sizeBytes);
    expect(Buffer.from(object.subarray(0, 8)).toString('latin1')).toBe('\x89CVREC\r\n');
  });

  test('the CLI decrypts what the redirect points at into the call audio', async () => {
    const res = await api(t, recordingPath(callSid));
    const url = res.headers.get('location')!;
    const out = join(work, 'client.wav');
    const { stderr } = await run(process.execPath, [CLI, 'decrypt', '--key', clientKey, url, out]);
    expect(stderr).toContain('2.000 s');
    const wav = decodeWav(await readFile(out));
    expect(wav).toMatchObject({ sampleRate: 16000, channels: 2, dataBytes: 2 * 16000 * 4 });
    expectTones(wav, 200, 1800);
  });

  test('a passphrase client key ("per-instance-key"): scrypt, its parameters in the header; the CLI decrypts it with the passphrase', async () => {
    const passphrase = 'per-instance-key';
    const placed = await placeCall(t, { recording: { enabled: true, key: passphrase } });
    expect(placed.closeCode).toBe(1000);
    const res = await api(t, recordingPath(placed.callSid));
    expect(res.status).toBe(302);
    const object = Buffer.from(await (await fetch(res.headers.get('location')!)).arrayBuffer());
    // Key mode 03 (client, passphrase); after the (empty) key id: log2N = 15, r = 8, p = 1.
    expect(object[15]).toBe(3);
    expect(object[59]).toBe(0);
    expect([...object.subarray(60, 65)]).toEqual([15, 0, 8, 0, 1]);
    expect(JSON.stringify(t.logs.lines)).not.toContain(passphrase);
    const input = join(work, 'passphrase.cvr');
    await writeFile(input, object);
    const out = join(work, 'passphrase.wav');
    const { stderr } = await run(process.execPath, [CLI, 'decrypt', '--key', passphrase, input, out]);
    expect(stderr).toContain('2.000 s');
    const wav = decodeWav(await readFile(out));
    expect(wav).toMatchObject({ sampleRate: 16000, channels: 2, dataBytes: 2 * 16000 * 4 });
    expectTones(wav, 200, 1800);
    // Another passphrase does not open it.
    const wrong = await run(process.execPath, [CLI, 'decrypt', '--key', 'per-instance-kez', input, join(work, 'wrong.wav')]).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(wrong?.code).toBe(1);
    expect(wrong?.stderr).toContain('CONTAINER_TAMPERED');
  });

  test.each([
    ['tampered', (b: Buffer) => { b[b.length - 100]! ^= 1; return b; }, 'CONTAINER_TAMPERED'],
    ['truncated at a segment boundary', (b: Buffer) => b.subarray(0, 75 + 16400), 'CONTAINER_TRUNCATED'],
    ['cut inside the header', (b: Buffer) => b.subarray(0, 40), 'CONTAINER_TRUNCATED'],
  ])('the CLI refuses a %s object and leaves no WAV', async (name, damage, code) => {
    const followed = await api(t, recordingPath(callSid), { redirect: 'follow' });
    const input = join(work, `${name.replace(/ /g, '-')}.cvr`);
    await writeFile(input, damage(Buffer.from(await followed.arrayBuffer())));
    const out = join(work, `${name.replace(/ /g, '-')}.wav`);
    const failure = await run(process.execPath, [CLI, 'decrypt', '--key', clientKey, input, out]).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain(code);
    await expect(stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(work)).filter((n) => n.includes(name.replace(/ /g, '-')) && n.endsWith('.wav'))).toEqual([]);
  });

  test('a presigned URL past its lifetime is refused by MinIO', async () => {
    // The gateway signs with its own clock: six minutes ago, so the 300 s URL has already expired.
    clockOffsetMs = -360_000;
    let res: Response;
    try {
      res = await api(t, recordingPath(callSid));
    } finally {
      clockOffsetMs = 0;
    }
    expect(res.status).toBe(302);
    const expired = await fetch(res.headers.get('location')!);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/expired/i);
  });
});

describe('a recording in progress', () => {
  test('answers 409 with its status, and ?live=1 serves the audio stored so far', async () => {
    const calling = placeCall(t, { durationMs: 6000, realtime: true });
    const callSid = await until(async () => {
      const rows = await t.gateway.db.recordings.list('acme', { status: 'in_progress', page: 0, limit: 10 });
      return rows.rows.length > 0 ? rows.rows[0] : undefined;
    }, 'the call to start recording').then(async (row) => {
      const page = await t.gateway.db.calls.get('acme', row.callId!);
      return page!.externalId;
    });
    const row = await inProgressRecording(t, 'acme', callSid);

    const busy = await api(t, recordingPath(callSid));
    expect(busy.status).toBe(409);
    expect(await busy.json()).toEqual({ error: { code: 'CONFLICT', message: expect.any(String), details: { status: 'in-progress' } } });

    // Wait until the spool holds about a second of sealed audio (16 kHz stereo: 64000 bytes).
    const spool = join(t.dataDir, 'spool', `${row.id}.cvr`);
    await until(async () => ((await stat(spool)).size > 75 + 4 * 16400 ? true : undefined), 'a second of audio in the spool');
    const live = await api(t, recordingPath(callSid, '?live=1'));
    expect(live.status).toBe(200);
    expect(live.headers.get('x-recording-status')).toBe('in-progress');
    const liveBytes = new Uint8Array(await live.arrayBuffer());
    const wav = decodeWav(liveBytes);
    // Whole segments only, each verified; the header announces exactly what follows.
    expect(wav.dataBytes % 16384).toBe(0);
    expect(wav.dataBytes).toBeGreaterThanOrEqual(4 * 16384);
    const servedMs = (wav.dataBytes / 4 / 16000) * 1000;
    expectTones(wav, 100, servedMs - 20);

    // The spool only grows: a later live range over the first segments returns the same PCM.
    const liveRange = await api(t, recordingPath(callSid, '?live=1'), { headers: { range: 'bytes=44-32811' } });
    expect(liveRange.status).toBe(206);
    expect(liveRange.headers.get('content-range')).toMatch(/^bytes 44-32811\/\d+$/);
    expect(Buffer.from(await liveRange.arrayBuffer()).equals(Buffer.from(liveBytes.subarray(44, 32812)))).toBe(true);

    const result = await calling;
    expect(result.closeCode).toBe(1000);
    const done = await api(t, recordingPath(callSid));
    expect(done.status).toBe(200);
    const final = decodeWav(new Uint8Array(await done.arrayBuffer()));
    expect(final.dataBytes).toBe(6 * 16000 * 4);
    // What was served live is the beginning of the final recording.
    const [liveLeft] = wav.channelSamples;
    const [finalLeft] = final.channelSamples;
    expect(Array.from(finalLeft!.subarray(0, liveLeft!.length))).toEqual(Array.from(liveLeft!));
    expect(await spoolFilesOf(t, row.id)).toEqual([]);
  });

  test('a failed recording answers 409 with status failed', async () => {
    const result = await placeCall(t, { durationMs: 400 });
    const [row] = await recordingsOfCall(t, 'acme', result.callSid);
    await t.gateway.db.recordings.delete('acme', row!.id);
    const { status: _status, ...input } = row!;
    const failed = await t.gateway.db.recordings.create(input);
    await t.gateway.db.recordings.fail(failed.id, { errorCode: 'UPLOAD_FAILED', endedAt: new Date() });
    const res = await api(t, recordingPath(result.callSid));
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'CONFLICT', details: { status: 'failed' } } });
  });
});

describe('organisation scoping', () => {
  const routes: Array<[string, string, string]> = [
    ['GET', 'GET', ''],
    ['HEAD', 'HEAD', ''],
    ['GET ?live=1', 'GET', '?live=1'],
    ['DELETE', 'DELETE', ''],
  ];

  test.each(routes)("%s of another organisation's call answers exactly like a missing call", async (_name, method, query) => {
    const theirs = await api(t, recordingPath(serverCall, query), { org: 'globex', method });
    const missing = await api(t, recordingPath(`CA${randomBytes(16).toString('hex')}`, query), { org: 'globex', method });
    expect(theirs.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(await theirs.text()).toBe(await missing.text());
    expect(theirs.headers.get('content-type')).toBe(missing.headers.get('content-type'));
    expect(theirs.headers.get('content-length')).toBe(missing.headers.get('content-length'));
    // And nothing happened to acme's recording.
    const mine = await api(t, recordingPath(serverCall), { method: 'HEAD' });
    expect(mine.status).toBe(200);
  });

  test('the 404 body is a JSON error', async () => {
    const res = await api(t, recordingPath(serverCall), { org: 'globex' });
    expect(await res.json()).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
  });
});

describe('authentication', () => {
  let revokedKey: string;
  beforeAll(async () => {
    const created = await t.gateway.db.apiKeys.create('acme', 'to revoke');
    expect(await t.gateway.db.apiKeys.revoke('acme', created.id)).toBe(true);
    revokedKey = created.key;
  });

  const cases: Array<[string, () => string | null]> = [
    ['missing', () => null],
    ['not a bearer token', () => `Basic ${Buffer.from('acme:secret').toString('base64')}`],
    ['an empty bearer token', () => 'Bearer '],
    ['malformed', () => 'Bearer two words'],
    ['wrong', () => `Bearer cvk_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`],
    ['revoked', () => `Bearer ${revokedKey}`],
  ];
  test.each(cases.flatMap(([name, auth]) => (['GET', 'DELETE'] as const).map((method) => [name, method, auth] as const)))(
    'a %s key on %s answers 401 with a JSON error',
    async (_name, method, auth) => {
      const res = await api(t, recordingPath(serverCall), { method, authorization: auth() });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(await res.json()).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.any(String) } });
    },
  );

  test('after all that, the recording is still there', async () => {
    expect((await api(t, recordingPath(serverCall), { method: 'HEAD' })).status).toBe(200);
  });
});
