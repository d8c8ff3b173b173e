/**
 * "Nothing lost", item 10 (live): a few thousand fuzzed frames through a real gateway over several hostile
 * Twilio and LiveKit Track Egress sockets, next to a good Twilio call and a good egress track. Every hostile
 * socket is closed with its documented close code (predicted by replaying its frames through a local
 * TwilioStreamSession), nothing rejects unhandled, and the good recordings are exact.
 */
import fc from 'fast-check';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CallvaultError, ErrorCode } from '../../dist/errors/index.js';
import { TWILIO_CLOSE_CODES, TwilioStreamSession, closeCodeFor } from '../../dist/ingest/twilio/index.js';
import { EGRESS_CLOSE_CODES, signEgressUrl } from '../../dist/ingest/livekit/index.js';
import { generateTone, pcm16ToBytes, rms, toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { placeCall, RawTwilioStream } from '../support/twilio.js';
import { livekitPeer, until } from '../ingest-livekit/support.js';
import { anyTextArb, mediaFrame, mutate, mutationArb, validFrames, WEIRD, type FrameIds } from './frames.js';

const HOSTILE_TWILIO_SOCKETS = 16;
const HOSTILE_EGRESS_SOCKETS = 4;
const FRAMES_PER_SOCKET = 300;
const OUTPUT_RATE = 16_000;
const EGRESS_RATE = 48_000;

let unhandled = 0;
const onUnhandled = (): void => {
  unhandled++;
};
// Controlled clock: frozen while the Twilio streams run, so a local session predicts the gateway exactly.
let clock = Date.now();
let t: TestGateway;

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  const lk = livekitPeer();
  t = await startTestGateway({
    now: () => clock,
    livekit: { url: lk.url, apiKey: lk.apiKey, apiSecret: lk.apiSecret, org: 'acme', egressReconnectGraceMs: 300 },
    recording: { sampleRate: OUTPUT_RATE, defaults: { enabled: true, stereo: true } },
  });
});
afterAll(async () => {
  await t?.dispose();
  process.off('unhandledRejection', onUnhandled);
});

type Outgoing = string | { binary: Buffer } | { oversize: true };

/** Variations Twilio or a lenient peer may send that must all be accepted: numbers or strings, extra fields, unicode names. */
const harmlessArb = fc.record({
  kind: fc.nat(19),
  numeric: fc.boolean(),
  dropSeq: fc.boolean(),
  dropSid: fc.boolean(),
  extra: fc.nat(),
  name: fc.string({ unit: 'binary', maxLength: 24 }),
  digit: fc.constantFrom(...'0123456789*#ABCDabcd'),
});

/**
 * Mostly harmless variations of good frames (so a socket lives long and the gateway parses thousands of
 * them), one in 200 a hostile frame (a mutated frame of any kind, any text, a binary or a 65 KiB frame),
 * and a sure error at the end.
 */
function hostilePlan(seed: number, ids: FrameIds): Outgoing[] {
  const steps = fc.sample(fc.tuple(fc.noBias(fc.nat(999)), harmlessArb, mutationArb, fc.uint8Array({ maxLength: 32 }), anyTextArb), { numRuns: FRAMES_PER_SOCKET - 2, seed });
  const out: Outgoing[] = [JSON.stringify(validFrames(1, ids)[1])];
  let seq = 2;
  let chunk = 1;
  for (const [dice, h, m, bytes, text] of steps) {
    if (dice < 995) {
      let frame: Record<string, unknown>;
      if (h.kind === 0) frame = { event: 'mark', sequenceNumber: String(seq), streamSid: ids.streamSid, mark: { name: h.name } };
      else if (h.kind === 1) frame = { event: 'dtmf', sequenceNumber: String(seq), streamSid: ids.streamSid, dtmf: { track: 'inbound_track', digit: h.digit } };
      else {
        frame = mediaFrame(seq, chunk, 20 * Math.floor((chunk - 1) / 2), ids, chunk % 2 ? 'inbound' : 'outbound');
        chunk++;
      }
      let text = JSON.stringify({ ...frame, [`x${h.extra % 3}`]: WEIRD[h.extra % WEIRD.length] });
      if (h.numeric) text = text.replace(/"(sequenceNumber|chunk|timestamp)":"(\d+)"/g, '"$1":$2');
      if (h.dropSeq) text = text.replace(/"sequenceNumber":"?\d+"?,/, '');
      if (h.dropSid) text = text.replace(`,"streamSid":"${ids.streamSid}"`, '');
      out.push(text);
    } else if (dice < 997) out.push(mutate([...validFrames(seq, ids), mediaFrame(seq, chunk, 20 * chunk, ids)], m));
    else if (dice < 998) out.push(text);
    else if (dice < 999) out.push({ binary: Buffer.from(bytes) });
    else out.push({ oversize: true });
    seq++;
  }
  out.push(JSON.stringify({ event: 'teleport', streamSid: ids.streamSid }));
  return out;
}

interface Prediction {
  /** The error the gateway must refuse the stream with. */
  code: ErrorCode;
  /** Frames the gateway parses and accepts before that. */
  accepted: number;
  /** Where the recorded media ends (ms), or null when no media was accepted. */
  mediaEndMs: number | null;
}

/** What a local session, fed the same frames, says the gateway must do with `plan`. */
function predict(plan: Outgoing[], accountSid: string): Prediction {
  const noop = (): void => undefined;
  let mediaEndMs: number | null = null;
  const session = new TwilioStreamSession(
    { now: () => clock, maxAheadOfClockMs: 10_000, expectedAccountSid: accountSid },
    { onStart: noop, onMedia: (m) => (mediaEndMs = Math.max(mediaEndMs ?? 0, m.timestampMs + m.payload.length / 8)), onDtmf: noop, onMark: noop, onStop: noop },
  );
  let accepted = 0;
  for (const frame of plan) {
    let code: ErrorCode | null = null;
    if (typeof frame !== 'string') code = 'binary' in frame ? ErrorCode.FrameMalformed : ErrorCode.FrameTooLarge;
    else if (Buffer.byteLength(frame) > 64 * 1024) code = ErrorCode.FrameTooLarge;
    else {
      try {
        session.handle(frame);
      } catch (err) {
        code = (err as CallvaultError).code;
      }
    }
    if (code !== null) return { code, accepted, mediaEndMs };
    accepted++;
  }
  throw new Error('plan ends in a sure error');
}

function egressUrl(room: string, roomSid: string, participant: string, role: 'caller' | 'agent'): string {
  return signEgressUrl(
    t.httpUrl,
    { room, roomSid, participant, track: `TR_${participant}`, role, sampleRate: EGRESS_RATE },
    { masterKey: t.gateway.options.keyring.current, expiresAtMs: clock + 3_600_000 },
  );
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('error', () => undefined);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

const closedWith = (ws: WebSocket): Promise<number> =>
  new Promise((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve(-1) : ws.once('close', (code) => resolve(code))));

async function livekitFrames(role: 'caller' | 'agent'): Promise<number> {
  const { values } = await t.gateway.metrics.framesReceived.get();
  return values.find((v) => v.labels['source'] === 'livekit' && v.labels['track'] === role)?.value ?? 0;
}

describe('fuzzed frames through a live gateway next to good calls', () => {
  test('hostile Twilio sockets close with their documented codes; the good call is recorded exactly', async () => {
    const acme = t.accounts[0]!;
    const documented = new Set<number>(Object.values(TWILIO_CLOSE_CODES));
    const good = placeCall(t, { durationMs: 2000 });
    let framesSent = 0;
    const hostile = await Promise.all(
      Array.from({ length: HOSTILE_TWILIO_SOCKETS }, async (_, i) => {
        const s = await RawTwilioStream.open(t, acme);
        const plan = hostilePlan(7000 + i, { accountSid: acme.accountSid, callSid: s.callSid, streamSid: s.streamSid });
        const expected = predict(plan, acme.accountSid);
        for (const frame of plan) {
          framesSent++;
          if (typeof frame === 'string') s.send(frame);
          else if ('binary' in frame) s.send(frame.binary, true);
          else s.send('x'.repeat(65 * 1024));
        }
        return { s, expected, closed: await s.closed };
      }),
    );
    expect(framesSent).toBe(HOSTILE_TWILIO_SOCKETS * FRAMES_PER_SOCKET);
    const accepted = hostile.reduce((n, h) => n + h.expected.accepted, 0);
    console.info(`live twilio fuzz: ${framesSent} frames sent, ${accepted} parsed and accepted before the refusals`, hostile.map((h) => `${h.expected.accepted}:${h.expected.code}`).join(' '));
    expect(accepted).toBeGreaterThan(2500);
    for (const { s, expected, closed } of hostile) {
      expect(documented.has(closed.code)).toBe(true);
      expect(closed.code).not.toBe(TWILIO_CLOSE_CODES.InternalError);
      // A frame after a valid `stop` is refused too (4402): the gateway reads it before the call is final.
      expect({ code: closed.code, reason: closed.reason }).toEqual({ code: closeCodeFor(expected.code), reason: expected.code });
      // What each hostile stream sent before its bad frame is finalised, not lost: up to the last accepted millisecond.
      await expect.poll(async () => (await recordingsOfCall(t, 'acme', s.callSid))[0]?.status).toBe('completed');
      const [row] = await recordingsOfCall(t, 'acme', s.callSid);
      expect(row!.durationMs).toBe(expected.mediaEndMs ?? 0);
    }

    const result = await good;
    expect(result.closeCode).toBe(1000);
    const [row] = await recordingsOfCall(t, 'acme', result.callSid);
    expect(row).toMatchObject({ status: 'completed', durationMs: 2000 });
    const rec = await fetchRecording(t, row!);
    expect(rec.channels).toBe(2);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(2 * OUTPUT_RATE);
    const amplitude = 0.4 * 32767;
    expect(toneAmplitude(left.subarray(1600, 30400), OUTPUT_RATE, 440)).toBeGreaterThan(amplitude * 0.95);
    expect(toneAmplitude(left.subarray(1600, 30400), OUTPUT_RATE, 440)).toBeLessThan(amplitude * 1.05);
    expect(toneAmplitude(right.subarray(1600, 30400), OUTPUT_RATE, 1000)).toBeGreaterThan(amplitude * 0.95);
    expect(toneAmplitude(right.subarray(1600, 30400), OUTPUT_RATE, 1000)).toBeLessThan(amplitude * 1.05);
    // No crosstalk: each channel carries only its own track.
    expect(toneAmplitude(left.subarray(1600, 30400), OUTPUT_RATE, 1000)).toBeLessThan(amplitude * 0.01);
    expect(toneAmplitude(right.subarray(1600, 30400), OUTPUT_RATE, 440)).toBeLessThan(amplitude * 0.01);
    expect(unhandled).toBe(0);
  });

  test('hostile egress sockets (garbage PCM, odd sizes, junk text) close with 1000 when their room finishes; the good egress track is exact', async () => {
    const start = clock;
    const callerBefore = await livekitFrames('caller');
    const good = await connect(egressUrl('fuzz-good', 'RM_fuzz_good', 'caller-1', 'caller'));
    const hostile = await Promise.all(
      Array.from({ length: HOSTILE_EGRESS_SOCKETS }, (_, i) => connect(egressUrl('fuzz-hostile', 'RM_fuzz_hostile', `h-${i}`, 'agent'))),
    );
    const closes = hostile.map(closedWith);
    const message = fc.oneof(
      { weight: 6, arbitrary: fc.uint8Array({ maxLength: 4000 }).map((b) => ({ binary: Buffer.from(b) })) },
      { weight: 2, arbitrary: anyTextArb },
      { weight: 1, arbitrary: mutationArb.map((m) => mutate([{ muted: true }, { muted: false }], m)) },
    );
    let goodFrames = 0;
    // One second of a 440 Hz caller in 20 ms frames, interleaved with the hostile sockets' frames.
    for (let f = 0; f < 50; f++) {
      const tone = generateTone({ frequency: 440, sampleRate: EGRESS_RATE, samples: 960, amplitude: 8000, startSample: f * 960 });
      good.send(pcm16ToBytes(tone), { binary: true });
      goodFrames++;
      for (const [i, ws] of hostile.entries()) {
        for (const m of fc.sample(message, { numRuns: 10, seed: 9000 + f * 100 + i })) {
          if (typeof m === 'string') ws.send(m);
          else ws.send(m.binary, { binary: true });
        }
      }
    }
    await until('the good frames', async () => (await livekitFrames('caller')) - callerBefore === goodFrames);
    clock = start + 1000;
    good.close(1000);
    await closedWith(good);

    // Finishing the hostile room closes its sockets with 1000 ("recording finished").
    const apiKey = t.gateway.options.apiKeys.find((k) => k.org === 'acme')!.key;
    const res = await fetch(`${t.httpUrl}/livekit/rooms/fuzz-hostile/recording`, { method: 'DELETE', headers: { authorization: `Bearer ${apiKey}` } });
    expect(res.status).toBe(200);
    expect(await Promise.all(closes)).toEqual(hostile.map(() => EGRESS_CLOSE_CODES.Normal));
    await expect.poll(async () => (await recordingsOfCall(t, 'acme', 'RM_fuzz_hostile'))[0]?.status).toBe('completed');

    const row = await until('the good egress recording', async () => {
      const [r] = await recordingsOfCall(t, 'acme', 'RM_fuzz_good');
      return r?.status === 'completed' ? r : null;
    });
    expect(row.durationMs).toBe(1000);
    const rec = await fetchRecording(t, row);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(OUTPUT_RATE);
    expect(toneAmplitude(left.subarray(800, 15200), OUTPUT_RATE, 440)).toBeGreaterThan(8000 * 0.95);
    expect(toneAmplitude(left.subarray(800, 15200), OUTPUT_RATE, 440)).toBeLessThan(8000 * 1.05);
    expect(rms(right)).toBe(0);
    expect(unhandled).toBe(0);
  });
});
