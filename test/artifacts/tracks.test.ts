/**
 * GET/HEAD /calls/:callId/recording?track=caller|bot against a real gateway (uWS, workers, PostgreSQL, MinIO):
 * each track is a mono 16-bit WAV at the recording's rate holding exactly that channel of the stereo file
 * (sample-aligned), with Range and HEAD; a mono recording is a 409 TRACKS_NOT_SEPARATE; client key mode
 * redirects to the encrypted stereo object; another organisation's call is a 404.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateTone, pcm16ToBytes, toneAmplitude } from '../support/audio.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { AGENT_HZ, CALLER_HZ, TONE_AMPLITUDE, api, decodeWav, placeCall, recordingPath, storeRecording, until, window } from '../api/support.js';

const EXPECTED = TONE_AMPLITUDE * 32767;

let t: TestGateway;
let callSid: string;
let stereo: ReturnType<typeof decodeWav>;
const tracks: Record<'caller' | 'bot', Uint8Array> = { caller: new Uint8Array(0), bot: new Uint8Array(0) };

beforeAll(async () => {
  t = await startTestGateway();
  const placed = await placeCall(t, { durationMs: 2000 });
  expect(placed.closeCode).toBe(1000);
  callSid = placed.callSid;
  const res = await api(t, recordingPath(callSid));
  expect(res.status).toBe(200);
  stereo = decodeWav(new Uint8Array(await res.arrayBuffer()));
  for (const track of ['caller', 'bot'] as const) {
    const r = await api(t, recordingPath(callSid, `?track=${track}`));
    expect(r.status).toBe(200);
    tracks[track] = new Uint8Array(await r.arrayBuffer());
  }
});

afterAll(async () => {
  await t?.dispose();
});

describe('a stereo recording', () => {
  test.each([
    ['caller', 0, CALLER_HZ, AGENT_HZ],
    ['bot', 1, AGENT_HZ, CALLER_HZ],
  ] as const)('?track=%s is channel %i of the stereo file as a mono WAV: its tone only, sample for sample', (track, channel, own, other) => {
    const wav = decodeWav(tracks[track]);
    expect(wav).toMatchObject({ sampleRate: 16000, channels: 1, dataBytes: stereo.dataBytes / 2 });
    const samples = wav.channelSamples[0]!;
    const w = window(samples, wav.sampleRate, 200, 1800);
    expect(toneAmplitude(w, wav.sampleRate, own)).toBeGreaterThan(EXPECTED * 0.9);
    expect(toneAmplitude(w, wav.sampleRate, other)).toBeLessThan(EXPECTED * 0.01);
    // Sample-aligned with the stereo file: exactly its channel.
    expect(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).equals(Buffer.from(stereo.channelSamples[channel]!.buffer))).toBe(true);
  });

  test('answers with a mono WAV’s headers; HEAD gives the same without a body', async () => {
    const res = await api(t, recordingPath(callSid, '?track=bot'), { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('audio/wav');
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(Number(res.headers.get('content-length'))).toBe(tracks.bot.length);
    expect(res.headers.get('x-callvault-track')).toBe('bot');
    expect(res.headers.get('content-disposition')).toMatch(/-bot\.wav"$/);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  test.each([
    ['bytes=0-43', 0, 43],
    ['bytes=0-100', 0, 100],
    ['bytes=45-1000', 45, 1000],
    ['bytes=1001-20000', 1001, 20000],
    ['bytes=30000-', 30000, undefined],
    ['bytes=-777', undefined, 777],
  ])('Range %s is exactly those bytes of the whole track file', async (range, start, end) => {
    const whole = tracks.caller;
    const from = start === undefined ? whole.length - end! : start;
    const to = start === undefined || end === undefined ? whole.length - 1 : end;
    const res = await api(t, recordingPath(callSid, '?track=caller'), { headers: { range } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${from}-${to}/${whole.length}`);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(Buffer.from(body).equals(Buffer.from(whole.subarray(from, to + 1)))).toBe(true);
  });

  test('a range past the end is 416 with the track file’s size', async () => {
    const res = await api(t, recordingPath(callSid, '?track=caller'), { headers: { range: `bytes=${tracks.caller.length}-` } });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe(`bytes */${tracks.caller.length}`);
  });

  test('an unknown track is a 400; another organisation’s call is a 404', async () => {
    const bad = await api(t, recordingPath(callSid, '?track=agent'));
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe('BAD_REQUEST');
    const other = await api(t, recordingPath(callSid, '?track=caller'), { org: 'globex' });
    expect(other.status).toBe(404);
    expect((await other.json()).error.code).toBe('NOT_FOUND');
  });
});

describe('a long stored stereo recording, small segments', () => {
  test('a range deep in the track deinterleaves the right segments: caller tone at 0.5 of full scale, bot at 0.2', async () => {
    const rate = 8000;
    const seconds = 30;
    const left = generateTone({ frequency: CALLER_HZ, amplitude: 0.5 * 32767, samples: seconds * rate, sampleRate: rate });
    const right = generateTone({ frequency: AGENT_HZ, amplitude: 0.2 * 32767, samples: seconds * rate, sampleRate: rate });
    const interleaved = new Int16Array(left.length * 2);
    for (let i = 0; i < left.length; i++) {
      interleaved[2 * i] = left[i]!;
      interleaved[2 * i + 1] = right[i]!;
    }
    // An odd segment size: segments end mid-frame, so frames straddle segments.
    const stored = await storeRecording(t, { pcm: pcm16ToBytes(interleaved), sampleRate: rate, channels: 2, segmentSize: 4099 });
    const start = 44 + 2 * rate * 20 + 1; // mid-sample, 20 s in
    const end = start + 2 * rate - 1;
    for (const [track, channel, hz, amplitude] of [
      ['caller', left, CALLER_HZ, 0.5],
      ['bot', right, AGENT_HZ, 0.2],
    ] as const) {
      const res = await api(t, recordingPath(stored.callSid, `?track=${track}`), { headers: { range: `bytes=${start}-${end}` } });
      expect(res.status).toBe(206);
      const body = new Uint8Array(await res.arrayBuffer());
      const mono = Buffer.from(pcm16ToBytes(channel));
      expect(Buffer.from(body).equals(mono.subarray(start - 44, end - 44 + 1))).toBe(true);
      const aligned = new Int16Array(Uint8Array.from(body.subarray(1, body.length - 1)).buffer);
      expect(toneAmplitude(aligned, rate, hz)).toBeGreaterThan(amplitude * 32767 * 0.9);
    }
  });
});

describe('tracks that were not kept apart', () => {
  test.each(['caller', 'bot'])('a mono (mixed) recording answers ?track=%s with 409 TRACKS_NOT_SEPARATE, GET and HEAD', async (track) => {
    const mono = generateTone({ frequency: CALLER_HZ, amplitude: 0.3 * 32767, samples: 4000, sampleRate: 8000 });
    const stored = await storeRecording(t, { pcm: pcm16ToBytes(mono), sampleRate: 8000, channels: 1 });
    const res = await api(t, recordingPath(stored.callSid, `?track=${track}`));
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatchObject({ code: 'TRACKS_NOT_SEPARATE', details: { channels: 1 } });
    expect((await api(t, recordingPath(stored.callSid, `?track=${track}`), { method: 'HEAD' })).status).toBe(409);
    // The mixed file itself is still served.
    expect((await api(t, recordingPath(stored.callSid))).status).toBe(200);
  });
});

describe('a recording in progress', () => {
  test('?live=1&track=caller serves the caller channel stored so far as a mono WAV', async () => {
    const calling = placeCall(t, { durationMs: 4000, realtime: true });
    const row = await until(async () => {
      const rows = await t.gateway.db.recordings.list('acme', { status: 'in_progress', page: 0, limit: 10 });
      return rows.rows[0];
    }, 'the call to start recording');
    // About a second of sealed audio in the spool (16 kHz stereo: 64000 bytes).
    const spool = join(t.dataDir, 'spool', `${row.id}.cvr`);
    await until(async () => ((await stat(spool).catch(() => ({ size: 0 }))).size > 75 + 4 * 16400 ? true : undefined), 'a second of audio in the spool');
    const call = await t.gateway.db.calls.get('acme', row.callId!);
    const res = await api(t, recordingPath(call!.externalId, '?live=1&track=caller'));
    expect(res.status).toBe(200);
    expect(res.headers.get('x-recording-status')).toBe('in-progress');
    const wav = decodeWav(new Uint8Array(await res.arrayBuffer()));
    expect(wav).toMatchObject({ channels: 1, sampleRate: 16000 });
    // Whole sealed segments of stereo only: half of them per track.
    expect(wav.dataBytes % 8192).toBe(0);
    expect(wav.dataBytes).toBeGreaterThanOrEqual(32768);
    const w = window(wav.channelSamples[0]!, 16000, 200, 900);
    expect(toneAmplitude(w, 16000, CALLER_HZ)).toBeGreaterThan(EXPECTED * 0.9);
    expect(toneAmplitude(w, 16000, AGENT_HZ)).toBeLessThan(EXPECTED * 0.01);
    expect((await calling).closeCode).toBe(1000);
  });
});

describe('client key mode', () => {
  test('?track= redirects to the encrypted stereo object and says which channel is the track', async () => {
    const key = randomBytes(32).toString('base64');
    const placed = await placeCall(t, { recording: { enabled: true, key } });
    expect(placed.closeCode).toBe(1000);
    const res = await api(t, recordingPath(placed.callSid, '?track=bot'));
    expect(res.status).toBe(302);
    expect(res.headers.get('x-callvault-key-mode')).toBe('client');
    expect(res.headers.get('x-callvault-track')).toBe('bot');
    expect(res.headers.get('x-callvault-track-channel')).toBe('1');
    const object = await fetch(res.headers.get('location')!);
    expect(object.status).toBe(200);
    expect(new TextDecoder().decode(new Uint8Array(await object.arrayBuffer()).subarray(1, 6))).toBe('CVREC');
  });
});

test('every status these routes answered is in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
