/**
 * The k6 load scripts of load/k6/, each run for one iteration (of every scenario) under the k6-compatible
 * harness against a real gateway (uWS, workers, PostgreSQL, MinIO; LiveKit configured), proving they speak
 * the protocols: what they sent is recorded, with the right duration and a tone in each channel, what they
 * deleted is gone, and every threshold and check they declare passes. A script that framed, signed or
 * paced anything wrong would fail here on the gateway's side, not only on its own thresholds.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { sliceMs, toneAmplitude } from '../support/audio.js';
import { fetchRecording, listBucket, PUBLIC_URL, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { livekitPeer } from '../ingest-livekit/support.js';
import type { K6RunResult, WsRecord } from './k6-protocol.js';
import { runK6Script } from './k6-harness.js';

/** The scripts' tones (load/k6/*.ts): caller 400 Hz, agent 1000 Hz. */
const CALLER_HZ = 400;
const AGENT_HZ = 1000;
const CALL_SECONDS = 2;
const CALL_MS = CALL_SECONDS * 1000;
const RATE = 16_000;

let t: TestGateway;

beforeAll(async () => {
  const peer = livekitPeer();
  t = await startTestGateway({
    livekit: { url: peer.url, apiKey: peer.apiKey, apiSecret: peer.apiSecret, org: 'acme', egressReconnectGraceMs: 1500 },
  });
});

afterAll(async () => {
  await t?.dispose();
});

function apiKey(org = 'acme'): string {
  const entry = t.gateway.options.apiKeys.find((k) => k.org === org);
  if (!entry) throw new Error(`no API key for ${org}`);
  return entry.key;
}

function twilioEnv(): Record<string, string> {
  const account = t.accounts[0]!;
  return { GATEWAY_URL: t.httpUrl, PUBLIC_URL, ACCOUNT_SID: account.accountSid, AUTH_TOKEN: account.authToken, API_KEY: apiKey() };
}

function egressEnv(): Record<string, string> {
  return { GATEWAY_URL: t.httpUrl, EGRESS_MASTER_KEY: Buffer.from(t.gateway.options.keyring.current).toString('base64'), API_KEY: apiKey() };
}

function explain(result: K6RunResult): string {
  return JSON.stringify({ errors: result.errors, thresholds: result.thresholds, checks: result.checks, logs: result.logs }, null, 2);
}

/** Every threshold and check the script declares held, and nothing threw. */
function expectAllPassed(result: K6RunResult): void {
  expect(result.errors, explain(result)).toEqual([]);
  expect(result.thresholds.length).toBeGreaterThan(0);
  expect(result.thresholds.filter((th) => !th.ok), explain(result)).toEqual([]);
  expect(result.checks.length).toBeGreaterThan(0);
  expect(result.checks.filter((c) => c.fails > 0 || c.passes === 0), explain(result)).toEqual([]);
}

function threshold(result: K6RunResult, metric: string) {
  const found = result.thresholds.find((th) => th.metric === metric);
  if (!found) throw new Error(`no threshold on ${metric}: ${explain(result)}`);
  return found;
}

/** Amplitude of a tone in a channel, away from the edges. */
function tone(channel: Int16Array, frequency: number): number {
  return toneAmplitude(sliceMs(channel, RATE, 200, CALL_MS - 200), RATE, frequency);
}

describe('load/k6/twilio-media.ts', () => {
  test('one real-time two-track call: signed upgrade, Twilio framing, closed with 1000, recorded whole with a tone per channel', async () => {
    const result = await runK6Script({ script: 'twilio-media.ts', env: { ...twilioEnv(), CALLS: '1', CALL_SECONDS: String(CALL_SECONDS) } });
    expectAllPassed(result);
    expect(result.scenarios).toEqual(['twilio_calls']);
    expect(threshold(result, 'twilio_close_1000')).toMatchObject({ ok: true, actual: 1 });
    expect(threshold(result, 'twilio_recording_complete')).toMatchObject({ ok: true, actual: 1 });

    expect(result.sockets).toHaveLength(1);
    const socket = result.sockets[0]!;
    const frames = CALL_MS / 20;
    expect(socket).toMatchObject({ module: 'k6/ws', status: 101, closeCode: 1000, closedBy: 'server', textSent: 2 + 2 * frames + 1, binarySent: 0 });
    expect(socket.headers['X-Twilio-Signature']).toMatch(/^[A-Za-z0-9+/]{27}=$/);
    const [connected, start, firstMedia] = socket.firstTexts.map((text) => JSON.parse(text) as Record<string, any>);
    expect(connected).toMatchObject({ event: 'connected' });
    expect(start).toMatchObject({
      event: 'start',
      start: { accountSid: t.accounts[0]!.accountSid, tracks: ['inbound', 'outbound'], mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
    });
    expect(firstMedia).toMatchObject({ event: 'media', media: { track: 'inbound', chunk: '1', timestamp: '0' } });
    const stop = JSON.parse(socket.lastTexts.at(-1)!) as Record<string, any>;
    expect(stop).toMatchObject({ event: 'stop', stop: { callSid: start!.start.callSid } });
    // Real time: the socket stayed open for the whole call (sent at once it would close in a few ms).
    expect(result.metrics['ws_session_duration']!.max).toBeGreaterThanOrEqual(CALL_MS);

    const rows = await recordingsOfCall(t, 'acme', start!.start.callSid as string);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'completed', channels: 2, sampleRate: RATE, durationMs: CALL_MS });
    const recording = await fetchRecording(t, rows[0]!);
    const [left, right] = recording.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(CALL_SECONDS * RATE);
    const full = 0.4 * 32767;
    expect(tone(left, CALLER_HZ)).toBeGreaterThan(full * 0.9);
    expect(tone(left, AGENT_HZ)).toBeLessThan(full * 0.01);
    expect(tone(right, AGENT_HZ)).toBeGreaterThan(full * 0.9);
    expect(tone(right, CALLER_HZ)).toBeLessThan(full * 0.01);
  });
});

describe('load/k6/livekit-egress.ts', () => {
  test('one room: caller and agent egress sockets with signed URLs, 48 kHz in real time, one room recording with a tone per channel', async () => {
    const result = await runK6Script({ script: 'livekit-egress.ts', env: { ...egressEnv(), ROOMS: '1', CALL_SECONDS: String(CALL_SECONDS) } });
    expectAllPassed(result);
    expect(threshold(result, 'egress_recording_complete')).toMatchObject({ ok: true, actual: 1 });

    const frames = CALL_MS / 20;
    expect(result.sockets).toHaveLength(2);
    for (const socket of result.sockets) {
      expect(socket).toMatchObject({ module: 'k6/websockets', status: 101, closedBy: 'client', closeCode: 1000, binarySent: frames, binaryBytesSent: frames * 960 * 2, textSent: 0 });
    }
    const query = (socket: WsRecord) => new URL(socket.url).searchParams;
    expect(result.sockets.map((s) => query(s).get('role')).sort()).toEqual(['agent', 'caller']);
    const roomSid = query(result.sockets[0]!).get('roomSid')!;
    expect(query(result.sockets[1]!).get('roomSid')).toBe(roomSid);
    expect(result.metrics['ws_session_duration']!.min).toBeGreaterThanOrEqual(CALL_MS);

    const rows = await recordingsOfCall(t, 'acme', roomSid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'completed', channels: 2, sampleRate: RATE, source: 'livekit' });
    expect(Math.abs(rows[0]!.durationMs! - CALL_MS)).toBeLessThanOrEqual(100);
    const recording = await fetchRecording(t, rows[0]!);
    const [left, right] = recording.channelSamples as [Int16Array, Int16Array];
    const full = 8000;
    expect(tone(left, CALLER_HZ)).toBeGreaterThan(full * 0.8);
    expect(tone(left, AGENT_HZ)).toBeLessThan(full * 0.01);
    expect(tone(right, AGENT_HZ)).toBeGreaterThan(full * 0.8);
    expect(tone(right, CALLER_HZ)).toBeLessThan(full * 0.01);
  });
});

describe('load/k6/management-api.ts', () => {
  test('setup records its own calls; browse lists, fetches and reads ranges (200, 206); delete answers 204 and the recording is gone', async () => {
    const result = await runK6Script({
      script: 'management-api.ts',
      env: { ...twilioEnv(), VUS: '1', SEED_READ: '1', SEED_DELETE: '1', SEED_CALL_SECONDS: '1' },
    });
    expectAllPassed(result);
    expect(result.scenarios).toEqual(['browse', 'delete']);
    const seeded = result.setupData as { read: Array<{ recordingSid: string; callSid: string }>; delete: Array<{ recordingSid: string; callSid: string }> };
    expect(seeded.read).toHaveLength(1);
    expect(seeded.delete).toHaveLength(1);

    const answered = (scenario: string) => result.requests.filter((r) => r.scenario === scenario).map((r) => [r.method, r.name, r.status]);
    expect(answered('browse')).toEqual([
      ['GET', 'list', 200],
      ['GET', 'fetch', 200],
      ['GET', 'media-range', 206],
      ['GET', 'media-range', 206],
    ]);
    expect(answered('delete')).toEqual([
      ['DELETE', 'delete', 204],
      ['GET', 'fetch-deleted', 404],
      ['GET', 'media-of-deleted', 404],
    ]);

    // The gateway's side: the deleted recording's row and object are gone, the one only read is intact.
    const kept = seeded.read[0]!;
    const deleted = seeded.delete[0]!;
    expect(await recordingsOfCall(t, 'acme', deleted.callSid)).toEqual([]);
    const keptRows = await recordingsOfCall(t, 'acme', kept.callSid);
    expect(keptRows).toHaveLength(1);
    expect(keptRows[0]).toMatchObject({ recordingSid: kept.recordingSid, status: 'completed', durationMs: 1000 });
    const bucket = await listBucket(t.bucket);
    expect(bucket.objects.filter((key) => key.includes(`/${deleted.callSid}/`))).toEqual([]);
    expect(bucket.objects.filter((key) => key.includes(`/${kept.callSid}/`))).toEqual([keptRows[0]!.objectKey]);
    expect(bucket.multipartUploads).toBe(0);
  });
});

describe('the thresholds catch a gateway that refuses the traffic', () => {
  test.each([
    {
      case: 'twilio-media.ts signing with the wrong auth token',
      script: 'twilio-media.ts',
      env: () => ({ ...twilioEnv(), AUTH_TOKEN: 'f'.repeat(32), CALLS: '1', CALL_SECONDS: '1' }),
      handshake: 'twilio_handshake_ok',
      failing: ['twilio_handshake_ok', 'twilio_close_1000', 'checks'],
    },
    {
      case: 'livekit-egress.ts signing with another master key',
      script: 'livekit-egress.ts',
      env: () => ({ ...egressEnv(), EGRESS_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'), ROOMS: '1', CALL_SECONDS: '1' }),
      handshake: 'egress_handshake_ok',
      failing: ['egress_handshake_ok', 'egress_closed_by_client', 'checks'],
    },
  ])('$case: 403 at the upgrade, thresholds failed, nothing recorded', async ({ script, env, handshake, failing }) => {
    const before = (await t.gateway.db.recordings.list('acme', { page: 0, limit: 100 })).total;
    const result = await runK6Script({ script, env: env() });
    expect(result.errors, explain(result)).toEqual([]);
    expect(result.sockets.length).toBeGreaterThan(0);
    expect(result.sockets.every((s) => s.status === 403), explain(result)).toBe(true);
    expect(threshold(result, handshake)).toMatchObject({ ok: false, actual: 0 });
    for (const metric of failing) expect(threshold(result, metric).ok, metric).toBe(false);
    expect((await t.gateway.db.recordings.list('acme', { page: 0, limit: 100 })).total).toBe(before);
  });
});
