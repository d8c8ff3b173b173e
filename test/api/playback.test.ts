/**
 * Signed playback URLs against a real gateway (uWS, workers, PostgreSQL, MinIO): POST /calls/{callId}/playback-url
 * issues a URL for one recording and one track that plays without any Authorization header, byte for byte what
 * the Bearer route serves, with Range and HEAD; tampered URLs, URLs for a longer lifetime than allowed, and
 * (with the gateway's clock moved on) expired ones are refused with 403 and a stable code; another
 * organisation's call is a 404; mono and client-key recordings get the 409s docs/api.md describes.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { signPlaybackPath, verifyPlaybackQuery } from '../../dist/api/index.js';
import { loadEnv } from '../../dist/config/index.js';
import { generateTone, pcm16ToBytes, toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { AGENT_HZ, CALLER_HZ, api, apiKeyOf, decodeWav, placeCall, recordingPath, storeRecording } from './support.js';

const TTL_SECONDS = 120;
let t: TestGateway;
let clockOffsetMs = 0;
let callSid: string;
const served: Record<'stereo' | 'caller' | 'bot', Uint8Array> = { stereo: new Uint8Array(0), caller: new Uint8Array(0), bot: new Uint8Array(0) };

beforeAll(async () => {
  t = await startTestGateway({ playbackUrlTtlSeconds: TTL_SECONDS, now: () => Date.now() + clockOffsetMs });
  const placed = await placeCall(t, { durationMs: 2000 });
  expect(placed.closeCode).toBe(1000);
  callSid = placed.callSid;
  for (const track of ['stereo', 'caller', 'bot'] as const) {
    const res = await api(t, recordingPath(callSid, track === 'stereo' ? '' : `?track=${track}`));
    expect(res.status).toBe(200);
    served[track] = new Uint8Array(await res.arrayBuffer());
  }
});

afterAll(async () => {
  await t?.dispose();
});

function issue(id: string, body: unknown, org = 'acme'): Promise<Response> {
  return fetch(`${t.httpUrl}/calls/${encodeURIComponent(id)}/playback-url`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKeyOf(t, org)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function playbackPath(track: 'stereo' | 'caller' | 'bot', id = callSid): Promise<string> {
  const res = await issue(id, { track });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { url: string; path: string; expires_at: string; track: string };
  expect(body.url).toBe(`${PUBLIC_URL}${body.path}`);
  return body.path;
}

/** No Authorization header at all: what an <audio> element sends. */
function play(path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  return fetch(`${t.httpUrl}${path}`, { method: init.method ?? 'GET', headers: init.headers ?? {}, redirect: 'manual' });
}

describe('a signed playback URL', () => {
  test('is issued for the call’s recording with its expiry, format and track', async () => {
    const before = Date.now();
    const res = await issue(callSid, { track: 'caller' });
    expect(res.status).toBe(201);
    const body = await res.json();
    expect(body).toMatchObject({ track: 'caller', channels: 1, sample_rate: 16000, duration_ms: 2000, content_type: 'audio/wav' });
    expect(body.path).toMatch(/^\/playback\/[0-9a-f-]{36}\?org=acme&track=caller&exp=\d+&sig=[A-Za-z0-9_-]{43}$/);
    const expires = Date.parse(body.expires_at);
    expect(expires).toBeGreaterThan(before + (TTL_SECONDS - 2) * 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + TTL_SECONDS * 1000);
    // The body is optional: no track is the recording as stored.
    const bare = await fetch(`${t.httpUrl}/calls/${callSid}/playback-url`, { method: 'POST', headers: { authorization: `Bearer ${apiKeyOf(t, 'acme')}` } });
    expect(bare.status).toBe(201);
    expect((await bare.json()).track).toBe('stereo');
  });

  test.each(['stereo', 'caller', 'bot'] as const)('%s plays without a Bearer header: exactly what the Bearer route serves, tones in place', async (track) => {
    const res = await play(await playbackPath(track));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('audio/wav');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(Buffer.from(bytes).equals(Buffer.from(served[track]))).toBe(true);
    const wav = decodeWav(bytes);
    const [left] = wav.channelSamples;
    const expected = track === 'bot' ? AGENT_HZ : CALLER_HZ;
    expect(toneAmplitude(left!.subarray(3200, 28_800), 16000, expected)).toBeGreaterThan(0.4 * 32767 * 0.9);
  });

  test.each([
    ['bytes=0-43', 0, 43],
    ['bytes=1000-4999', 1000, 4999],
    ['bytes=60000-', 60000, undefined],
    ['bytes=-500', undefined, 500],
  ])('Range %s without a Bearer header is a 206 of exactly those bytes', async (range, start, end) => {
    const whole = served.stereo;
    const from = start === undefined ? whole.length - end! : start;
    const to = start === undefined || end === undefined ? whole.length - 1 : end;
    const res = await play(await playbackPath('stereo'), { headers: { range } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${from}-${to}/${whole.length}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(whole.subarray(from, to + 1)))).toBe(true);
  });

  test('HEAD gives the length without a body; a range past the end is 416', async () => {
    const path = await playbackPath('bot');
    const head = await play(path, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(served.bot.length);
    expect((await head.arrayBuffer()).byteLength).toBe(0);
    const past = await play(path, { headers: { range: `bytes=${served.bot.length}-` } });
    expect(past.status).toBe(416);
  });

  const flip = (sig: string, at: number) => `${sig.slice(0, at)}${sig[at] === 'A' ? 'B' : 'A'}${sig.slice(at + 1)}`;
  /** The 43rd base64url character holds 4 bits of the MAC and 2 spare ones: set a spare bit, same bytes. */
  const respellLast = (sig: string) => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelled = `${sig.slice(0, -1)}${alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1]}`;
    expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
    return respelled;
  };
  const tamper: [string, (u: URL) => void][] = [
    ['a character of the signature changed', (u) => u.searchParams.set('sig', flip(u.searchParams.get('sig')!, 10))],
    // The last character's two spare bits: another spelling of the same bytes is not the signature either.
    ['the signature’s last character respelled', (u) => u.searchParams.set('sig', respellLast(u.searchParams.get('sig')!))],
    ['the track changed (caller → bot)', (u) => u.searchParams.set('track', 'bot')],
    ['the expiry moved later', (u) => u.searchParams.set('exp', String(Number(u.searchParams.get('exp')) + 60))],
    ['the organisation changed', (u) => u.searchParams.set('org', 'globex')],
    ['another recording id', (u) => (u.pathname = `/playback/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`)],
    ['no signature', (u) => u.searchParams.delete('sig')],
    ['a malformed expiry', (u) => u.searchParams.set('exp', 'soon')],
  ];
  test.each(tamper)('%s: 403 PLAYBACK_URL_INVALID, and no audio', async (_name, change) => {
    const url = new URL(await playbackPath('caller'), t.httpUrl);
    change(url);
    for (const method of ['GET', 'HEAD']) {
      const res = await play(`${url.pathname}${url.search}`, { method, headers: { range: 'bytes=0-99' } });
      expect(res.status).toBe(403);
      if (method === 'GET') expect((await res.json()).error.code).toBe('PLAYBACK_URL_INVALID');
    }
  });

  test('a URL signed by this gateway for longer than PLAYBACK_URL_TTL_SECONDS is refused', async () => {
    const row = (await t.gateway.db.recordings.list('acme', { callSid, page: 0, limit: 1 })).rows[0]!;
    const path = signPlaybackPath(t.gateway.options.keyring.current, { org: 'acme', recordingId: row.id, track: 'stereo' }, Date.now() + 2 * TTL_SECONDS * 1000);
    const res = await play(path);
    expect(res.status).toBe(403);
    expect((await res.json()).error).toMatchObject({ code: 'PLAYBACK_URL_INVALID', details: { maxLifetimeSeconds: TTL_SECONDS } });
    // Signed with a key not in the keyring: refused the same way.
    const foreign = signPlaybackPath(randomBytes(32), { org: 'acme', recordingId: row.id, track: 'stereo' }, Date.now() + 60_000);
    expect((await play(foreign)).status).toBe(403);
  });
});

describe('issuing', () => {
  test('needs the Bearer key; another organisation’s call is a 404; an unknown track is a 400', async () => {
    const none = await fetch(`${t.httpUrl}/calls/${callSid}/playback-url`, { method: 'POST' });
    expect(none.status).toBe(401);
    const other = await issue(callSid, { track: 'stereo' }, 'globex');
    expect(other.status).toBe(404);
    expect((await other.json()).error.code).toBe('NOT_FOUND');
    const bad = await issue(callSid, { track: 'agent' });
    expect(bad.status).toBe(400);
    expect((await issue(`CA${randomBytes(16).toString('hex')}`, {})).status).toBe(404);
    // A key without the read scope.
    const controlOnly = (await t.gateway.db.apiKeys.create('acme', { scopes: ['control'] })).key;
    const forbidden = await fetch(`${t.httpUrl}/calls/${callSid}/playback-url`, { method: 'POST', headers: { authorization: `Bearer ${controlOnly}` } });
    expect(forbidden.status).toBe(403);
    expect((await forbidden.json()).error.code).toBe('FORBIDDEN');
    // A user-bound key sees only its user's calls: this untagged one is not there.
    const userBound = (await t.gateway.db.apiKeys.create('acme', { scopes: ['read'], userId: 'u123' })).key;
    const hidden = await fetch(`${t.httpUrl}/calls/${callSid}/playback-url`, { method: 'POST', headers: { authorization: `Bearer ${userBound}` } });
    expect(hidden.status).toBe(404);
  });

  test('a mono recording: the mixed file plays; one track is 409 TRACKS_NOT_SEPARATE', async () => {
    const mono = generateTone({ frequency: CALLER_HZ, amplitude: 0.3 * 32767, samples: 8000, sampleRate: 8000 });
    const stored = await storeRecording(t, { pcm: pcm16ToBytes(mono), sampleRate: 8000, channels: 1 });
    const res = await issue(stored.callSid, { track: 'caller' });
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatchObject({ code: 'TRACKS_NOT_SEPARATE', details: { channels: 1 } });
    const whole = await play(await playbackPath('stereo', stored.callSid));
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(Buffer.from(stored.wav))).toBe(true);
  });

  test('a client-key recording: 409 CONFLICT with keyMode client (the gateway cannot decrypt it)', async () => {
    const placed = await placeCall(t, { durationMs: 400, recording: { enabled: true, key: randomBytes(32).toString('hex') } });
    await expect.poll(async () => (await api(t, recordingPath(placed.callSid))).status).toBe(302);
    const res = await issue(placed.callSid, { track: 'stereo' });
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatchObject({ code: 'CONFLICT', details: { keyMode: 'client' } });
  });

  test('a recording deleted after its URL was issued: 404', async () => {
    const placed = await placeCall(t, { durationMs: 400 });
    const path = await playbackPath('stereo', placed.callSid);
    expect((await play(path)).status).toBe(200);
    expect((await api(t, recordingPath(placed.callSid), { method: 'DELETE' })).status).toBe(204);
    const gone = await play(path);
    expect(gone.status).toBe(404);
    expect((await gone.json()).error.code).toBe('NOT_FOUND');
  });
});

describe('signing keys and configuration', () => {
  const target = { org: 'acme', recordingId: '5b0e6f8a-0000-4000-8000-000000000001', track: 'bot' as const };
  const query = (path: string) => new URL(path, 'http://x').searchParams;

  test('a URL signed with a master key rotated out but still in the keyring verifies; once the key is gone it does not', () => {
    const old = randomBytes(32);
    const current = randomBytes(32);
    const now = Date.now();
    const path = signPlaybackPath(old, target, now + 60_000);
    expect(verifyPlaybackQuery(target.recordingId, query(path), [current, old], now, 600_000)).toMatchObject({ ...target, expiresAtMs: Math.floor((now + 60_000) / 1000) * 1000 });
    expect(() => verifyPlaybackQuery(target.recordingId, query(path), [current], now, 600_000)).toThrow(expect.objectContaining({ code: 'PLAYBACK_URL_INVALID' }));
    // The same key, another recording: refused.
    expect(() => verifyPlaybackQuery('5b0e6f8a-0000-4000-8000-000000000002', query(path), [old], now, 600_000)).toThrow(expect.objectContaining({ code: 'PLAYBACK_URL_INVALID' }));
  });

  test.each([
    [undefined, 600],
    ['30', 30],
    ['3600', 3600],
  ])('PLAYBACK_URL_TTL_SECONDS=%s is a lifetime of %i s', (value, seconds) => {
    expect(loadEnv(value === undefined ? {} : { PLAYBACK_URL_TTL_SECONDS: value }).PLAYBACK_URL_TTL_SECONDS).toBe(seconds);
  });

  test.each(['29', '3601', '90.5', 'ten minutes'])('PLAYBACK_URL_TTL_SECONDS=%s is refused (minutes, not hours or a day)', (value) => {
    expect(() => loadEnv({ PLAYBACK_URL_TTL_SECONDS: value })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', details: { variables: ['PLAYBACK_URL_TTL_SECONDS'] } }));
  });
});

describe('expiry (the gateway’s clock moved on)', () => {
  test('plays until its expiry, then 403 PLAYBACK_URL_EXPIRED; a new URL plays again', async () => {
    const path = await playbackPath('stereo');
    clockOffsetMs = (TTL_SECONDS - 5) * 1000;
    expect((await play(path, { headers: { range: 'bytes=0-99' } })).status).toBe(206);
    clockOffsetMs = (TTL_SECONDS + 1) * 1000;
    const expired = await play(path, { headers: { range: 'bytes=0-99' } });
    expect(expired.status).toBe(403);
    expect((await expired.json()).error.code).toBe('PLAYBACK_URL_EXPIRED');
    expect((await play(path, { method: 'HEAD' })).status).toBe(403);
    const fresh = await play(await playbackPath('stereo'), { headers: { range: 'bytes=0-99' } });
    expect(fresh.status).toBe(206);
    clockOffsetMs = 0;
  });

  test('every status answered is documented', async () => {
    expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(5);
  });
});
