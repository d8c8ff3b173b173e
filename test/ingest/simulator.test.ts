import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { mulaw } from 'alawmulaw';
import {
  TwilioStreamSession,
  buildConnectedMessage,
  buildDtmfMessage,
  buildMarkMessage,
  buildMediaMessage,
  buildStartMessage,
  buildStopMessage,
  closeFrameFor,
  identifyTwilioAccount,
  parseTwilioMessage,
  planTwilioCall,
  readWavPcm16Mono8k,
  simulateTwilioCall,
  streamUrlForSignature,
  type TwilioCallPlan,
  type TwilioMediaEvent,
  type TwilioSessionSink,
  type TwilioStartInfo,
} from '../../dist/ingest/twilio/index.js';
import { ACCOUNT_SID, CALL_SID, STREAM_SID, concat, decodeMulaw, expectTone, rms } from './helpers.js';

const AUTH_TOKEN = 'simulator-test-token-0123456789';

interface Received {
  start?: TwilioStartInfo;
  media: TwilioMediaEvent[];
  dtmf: string[];
  marks: string[];
  stopped: boolean;
}

function collectingSink(): { sink: TwilioSessionSink; received: Received } {
  const received: Received = { media: [], dtmf: [], marks: [], stopped: false };
  return {
    received,
    sink: {
      onStart: (info) => (received.start = info),
      onMedia: (m) => received.media.push(m),
      onDtmf: (e) => received.dtmf.push(e.digit),
      onMark: (e) => received.marks.push(e.name),
      onStop: () => (received.stopped = true),
    },
  };
}

function trackAudio(received: Received, track: 'inbound' | 'outbound'): { timestamps: number[]; audio: Int16Array } {
  const frames = received.media.filter((m) => m.track === track);
  return { timestamps: frames.map((f) => f.timestampMs), audio: decodeMulaw(concat(frames.map((f) => f.payload))) };
}

const basePlan: TwilioCallPlan = {
  accountSid: ACCOUNT_SID,
  callSid: CALL_SID,
  streamSid: STREAM_SID,
  mode: 'both_tracks',
  durationMs: 1000,
  inbound: { kind: 'tone', frequencyHz: 440 },
  outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.25 },
};

/** Plays a plan into a session whose clock follows each frame's send time, as a live call would. */
function playIntoSession(plan: TwilioCallPlan): Received {
  const clock = { ms: 0 };
  const { sink, received } = collectingSink();
  const session = new TwilioStreamSession({ now: () => clock.ms, maxAheadOfClockMs: 0, expectedAccountSid: ACCOUNT_SID }, sink);
  for (const frame of planTwilioCall(plan)) {
    clock.ms = frame.atMs;
    session.handle(frame.text);
  }
  return received;
}

describe('frame builders produce frames the parser accepts', () => {
  test.each([
    { name: 'connected', text: buildConnectedMessage(), expected: { event: 'connected', protocol: 'Call', version: '1.0.0' } },
    {
      name: 'start',
      text: buildStartMessage({ sequenceNumber: 1, accountSid: ACCOUNT_SID, callSid: CALL_SID, streamSid: STREAM_SID, tracks: ['inbound'], customParameters: { a: 'b' } }),
      expected: {
        event: 'start',
        sequenceNumber: 1,
        streamSid: STREAM_SID,
        start: {
          accountSid: ACCOUNT_SID,
          callSid: CALL_SID,
          streamSid: STREAM_SID,
          tracks: ['inbound'],
          customParameters: { a: 'b' },
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
      },
    },
    {
      name: 'media',
      text: buildMediaMessage({ sequenceNumber: 7, streamSid: STREAM_SID, track: 'outbound', chunk: 3, timestampMs: 40, payload: new Uint8Array(160).fill(0xff) }),
      expected: {
        event: 'media',
        sequenceNumber: 7,
        streamSid: STREAM_SID,
        media: { track: 'outbound', chunk: 3, timestamp: 40, payload: Buffer.alloc(160, 0xff).toString('base64') },
      },
    },
    {
      name: 'dtmf',
      text: buildDtmfMessage({ sequenceNumber: 8, streamSid: STREAM_SID, digit: '*' }),
      expected: { event: 'dtmf', sequenceNumber: 8, streamSid: STREAM_SID, dtmf: { track: 'inbound_track', digit: '*' } },
    },
    {
      name: 'mark',
      text: buildMarkMessage({ sequenceNumber: 9, streamSid: STREAM_SID, name: 'beep' }),
      expected: { event: 'mark', sequenceNumber: 9, streamSid: STREAM_SID, mark: { name: 'beep' } },
    },
    {
      name: 'stop',
      text: buildStopMessage({ sequenceNumber: 10, streamSid: STREAM_SID, accountSid: ACCOUNT_SID, callSid: CALL_SID }),
      expected: { event: 'stop', sequenceNumber: 10, streamSid: STREAM_SID, stop: { accountSid: ACCOUNT_SID, callSid: CALL_SID } },
    },
  ])('$name', ({ text, expected }) => {
    expect(parseTwilioMessage(text)).toEqual(expected);
  });

  test('the media builder sends a given base64 string untouched, so tests can send broken payloads', () => {
    const text = buildMediaMessage({ sequenceNumber: 2, streamSid: STREAM_SID, track: 'inbound', chunk: 1, timestampMs: 0, payload: 'A!==' });
    expect(JSON.parse(text).media.payload).toBe('A!==');
  });
});

describe('planned calls', () => {
  test('both tracks: 20 ms frames, contiguous timestamps and chunks, one sequence, tones on each track', () => {
    const frames = [...planTwilioCall(basePlan)];
    expect(frames.map((f) => f.event).slice(0, 2)).toEqual(['connected', 'start']);
    expect(frames.at(-1)?.event).toBe('stop');
    const sequenceNumbers = frames.slice(1).map((f) => (parseTwilioMessage(f.text) as { sequenceNumber: number }).sequenceNumber);
    expect(sequenceNumbers).toEqual(sequenceNumbers.map((_, i) => i + 1));

    const received = playIntoSession(basePlan);
    expect(received.start?.tracks).toEqual(['inbound', 'outbound']);
    expect(received.stopped).toBe(true);
    for (const [track, hz, amplitude] of [['inbound', 440, 0.5], ['outbound', 1000, 0.25]] as const) {
      const frames = received.media.filter((m) => m.track === track);
      expect(frames.map((f) => f.payload.length)).toEqual(Array(50).fill(160));
      expect(frames.map((f) => f.chunk)).toEqual(frames.map((_, i) => i + 1));
      const { timestamps, audio } = trackAudio(received, track);
      expect(timestamps).toEqual(timestamps.map((_, i) => i * 20));
      expect(audio.length).toBe(8000);
      expectTone(audio, hz);
      const expectedRms = (amplitude * 32767) / Math.SQRT2;
      expect(Math.abs(rms(audio) / expectedRms - 1)).toBeLessThan(0.02);
    }
  });

  test('<Connect><Stream> announces and sends the inbound track only', () => {
    const received = playIntoSession({ ...basePlan, mode: 'connect' });
    expect(received.start?.tracks).toEqual(['inbound']);
    expect(received.media.every((m) => m.track === 'inbound')).toBe(true);
    expect(received.media).toHaveLength(50);
  });

  test.each([
    { track: 'inbound' as const, startMs: 200, durationMs: 500 },
    { track: 'outbound' as const, startMs: 0, durationMs: 100 },
    { track: 'inbound' as const, startMs: 900, durationMs: 100 },
  ])('a gap on $track at $startMs for $durationMs ms drops exactly those frames while timestamps keep running', ({ track, startMs, durationMs }) => {
    const received = playIntoSession({ ...basePlan, gaps: [{ track, startMs, durationMs }] });
    const all = Array.from({ length: 50 }, (_, i) => i * 20);
    const { timestamps, audio } = trackAudio(received, track);
    expect(timestamps).toEqual(all.filter((t) => t < startMs || t >= startMs + durationMs));
    expect(audio.length).toBe(((1000 - durationMs) * 8000) / 1000);
    const other = trackAudio(received, track === 'inbound' ? 'outbound' : 'inbound');
    expect(other.timestamps).toEqual(all);
    // Chunks count messages actually sent, so they stay contiguous across the gap.
    const chunks = received.media.filter((m) => m.track === track).map((m) => m.chunk);
    expect(chunks).toEqual(chunks.map((_, i) => i + 1));
    // The frame after the gap carries the tone at its own time: phase continues as if nothing was lost.
    const firstAfter = received.media.find((m) => m.track === track && m.timestampMs === startMs + durationMs);
    if (firstAfter) {
      const expected = new Int16Array(160);
      const hz = track === 'inbound' ? 440 : 1000;
      const amplitude = track === 'inbound' ? 0.5 : 0.25;
      for (let i = 0; i < 160; i++) {
        expected[i] = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * hz * ((startMs + durationMs) * 8 + i)) / 8000));
      }
      expect(new Uint8Array(firstAfter.payload)).toEqual(mulaw.encode(expected));
    }
  });

  test('dtmf and mark frames go before the first media frame at or after their time', () => {
    const frames = [...planTwilioCall({ ...basePlan, durationMs: 100, dtmf: [{ atMs: 40, digit: '9' }], marks: [{ atMs: 500, name: 'late' }] })];
    const events = frames.map((f) => {
      const m = parseTwilioMessage(f.text);
      return m.event === 'media' ? `${m.media.track[0]}${m.media.timestamp}` : m.event;
    });
    expect(events).toEqual(['connected', 'start', 'i0', 'o0', 'i20', 'o20', 'dtmf', 'i40', 'o40', 'i60', 'o60', 'i80', 'o80', 'mark', 'stop']);
    const received = playIntoSession({ ...basePlan, durationMs: 100, dtmf: [{ atMs: 40, digit: '9' }], marks: [{ atMs: 500, name: 'late' }] });
    expect(received.dtmf).toEqual(['9']);
    expect(received.marks).toEqual(['late']);
  });

  test('samples play verbatim and are followed by silence', () => {
    const samples = new Int16Array(400).map((_, i) => (i % 2 === 0 ? 8000 : -8000));
    const received = playIntoSession({ ...basePlan, durationMs: 100, inbound: { kind: 'samples', samples } });
    const { audio } = trackAudio(received, 'inbound');
    expect(audio.length).toBe(800);
    expect(Array.from(audio.subarray(0, 400))).toEqual(Array.from(mulaw.decode(mulaw.encode(samples))));
    expect(audio.subarray(400).every((s) => s === 0)).toBe(true);
  });

  test.each([
    { name: 'a duration that is not whole frames', change: { durationMs: 1010 } },
    { name: 'a zero duration', change: { durationMs: 0 } },
    { name: 'a gap off the 20 ms grid', change: { gaps: [{ track: 'inbound' as const, startMs: 2010, durationMs: 500 }] } },
    { name: 'an outbound gap on a <Connect> call', change: { mode: 'connect' as const, gaps: [{ track: 'outbound' as const, startMs: 0, durationMs: 20 }] } },
    { name: 'a DTMF digit that is not one', change: { dtmf: [{ atMs: 0, digit: 'x' }] } },
  ])('refuses $name', ({ change }) => {
    expect(() => [...planTwilioCall({ ...basePlan, ...change })]).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

function wav(init: { format?: number; channels?: number; sampleRate?: number; bits?: number; samples?: Int16Array; extraChunk?: boolean }): Uint8Array {
  const samples = init.samples ?? new Int16Array([0, 1000, -1000, 32767, -32768]);
  const bits = init.bits ?? 16;
  const data = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => data.writeInt16LE(s, i * 2));
  const fmt = Buffer.alloc(16);
  fmt.writeUInt16LE(init.format ?? 1, 0);
  fmt.writeUInt16LE(init.channels ?? 1, 2);
  fmt.writeUInt32LE(init.sampleRate ?? 8000, 4);
  fmt.writeUInt32LE(((init.sampleRate ?? 8000) * (init.channels ?? 1) * bits) / 8, 8);
  fmt.writeUInt16LE(((init.channels ?? 1) * bits) / 8, 12);
  fmt.writeUInt16LE(bits, 14);
  const chunk = (id: string, body: Buffer): Buffer => {
    const header = Buffer.alloc(8);
    header.write(id, 0, 'ascii');
    header.writeUInt32LE(body.length, 4);
    return Buffer.concat([header, body, body.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
  };
  const chunks = [chunk('fmt ', fmt), ...(init.extraChunk ? [chunk('LIST', Buffer.from('INFOabc'))] : []), chunk('data', data)];
  const body = Buffer.concat([Buffer.from('WAVE'), ...chunks]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'ascii');
  riff.writeUInt32LE(body.length, 4);
  return new Uint8Array(Buffer.concat([riff, body]));
}

describe('readWavPcm16Mono8k', () => {
  test.each([{ extraChunk: false }, { extraChunk: true }])('reads PCM16 mono 8 kHz samples (other chunks: $extraChunk)', ({ extraChunk }) => {
    const samples = new Int16Array([0, 1000, -1000, 32767, -32768]);
    expect(readWavPcm16Mono8k(wav({ samples, extraChunk }))).toEqual(samples);
  });

  test.each([
    { name: 'stereo', file: wav({ channels: 2 }), says: '2 channel(s)' },
    { name: '44.1 kHz', file: wav({ sampleRate: 44100 }), says: '44100 Hz' },
    { name: '8-bit', file: wav({ bits: 8 }), says: '8-bit' },
    { name: 'mu-law WAV', file: wav({ format: 7, bits: 8 }), says: 'format 7' },
    { name: 'not RIFF', file: new Uint8Array(Buffer.from('ID3\u0004 not a wav file at all')), says: 'not a RIFF/WAVE file' },
    { name: 'truncated', file: wav({}).subarray(0, 48), says: 'runs past the end' },
  ])('refuses $name with a message saying so', ({ file, says }) => {
    expect(() => readWavPcm16Mono8k(file, 'call.wav')).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringContaining(says) }),
    );
    expect(() => readWavPcm16Mono8k(file, 'call.wav')).toThrow(/^call\.wav: .*PCM 16-bit mono 8000 Hz/);
  });
});

/**
 * A minimal real WebSocket endpoint built from the ingest layer: signature check on upgrade, one
 * session per socket, close with the protocol's codes. `closeAfterStop: false` plays a gateway
 * that never closes.
 */
async function startEndpoint(opts: { maxAheadOfClockMs: number; now: () => number; closeAfterStop?: boolean }) {
  const accounts = [
    { org: 'other', accountSid: 'AC99999999999999999999999999999999', authToken: 'other-token-0123456789' },
    { org: 'acme', accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN },
  ];
  const { sink, received } = collectingSink();
  let port = 0;
  const server = new WebSocketServer({
    port: 0,
    host: '127.0.0.1',
    verifyClient: (info, done) => {
      const url = streamUrlForSignature(`http://127.0.0.1:${port}`, info.req.url ?? '/');
      const header = info.req.headers['x-twilio-signature'];
      const account = identifyTwilioAccount(accounts, typeof header === 'string' ? header : undefined, url);
      (info.req as { account?: unknown }).account = account;
      done(account !== null, 403);
    },
  });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  port = (server.address() as AddressInfo).port;
  server.on('connection', (ws: WebSocket, req) => {
    const account = (req as { account?: { accountSid: string } }).account!;
    const session = new TwilioStreamSession(
      { now: opts.now, maxAheadOfClockMs: opts.maxAheadOfClockMs, expectedAccountSid: account.accountSid },
      { ...sink, onStop: (e) => { sink.onStop(e); if (opts.closeAfterStop ?? true) ws.close(1000, 'stop'); } },
    );
    ws.on('message', (data) => {
      if (session.state === 'failed') return;
      try {
        session.handle(data.toString('utf8'));
      } catch (err) {
        const { code, reason } = closeFrameFor(err);
        ws.close(code, reason);
      }
    });
  });
  return { url: `ws://127.0.0.1:${port}/twilio/media?tenant=acme`, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('simulateTwilioCall over a real WebSocket', () => {
  const endpoints: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(endpoints.splice(0).map((e) => e.close()));
  });

  test('places a signed call, sends every frame, and returns when the server closes after stop', async () => {
    const endpoint = await startEndpoint({ maxAheadOfClockMs: 60_000, now: () => 0 });
    endpoints.push(endpoint);
    const result = await simulateTwilioCall({
      url: endpoint.url,
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      durationMs: 2000,
      gaps: [{ track: 'inbound', startMs: 1000, durationMs: 200 }],
      dtmf: [{ atMs: 500, digit: '1' }],
      recording: { enabled: true, stereo: true },
      customParameters: { agent: 'a-17' },
    });
    expect(result).toMatchObject({ closeCode: 1000, closeReason: 'stop', closedBy: 'server', framesSent: 100 + 90 });
    expect(result.callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(result.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    expect(endpoint.received.start).toMatchObject({
      callSid: result.callSid,
      streamSid: result.streamSid,
      accountSid: ACCOUNT_SID,
      customParameters: { agent: 'a-17', recording: '{"enabled":true,"stereo":true}' },
    });
    expect(endpoint.received.dtmf).toEqual(['1']);
    expect(endpoint.received.stopped).toBe(true);
    const inbound = trackAudio(endpoint.received, 'inbound');
    expect(inbound.audio.length).toBe(1800 * 8);
    expectTone(inbound.audio, 440);
    expectTone(trackAudio(endpoint.received, 'outbound').audio, 1000);
  });

  test.each([
    { name: 'a wrong auth token', authToken: 'wrong-token', signature: undefined },
    { name: 'no signature header', authToken: AUTH_TOKEN, signature: null },
  ])('an upgrade with $name is refused before any frame is sent', async ({ authToken, signature }) => {
    const endpoint = await startEndpoint({ maxAheadOfClockMs: 60_000, now: () => 0 });
    endpoints.push(endpoint);
    await expect(
      simulateTwilioCall({ url: endpoint.url, accountSid: ACCOUNT_SID, authToken, signature, durationMs: 100 }),
    ).rejects.toMatchObject({ code: 'SIGNATURE_INVALID', details: { httpStatus: 403 } });
    expect(endpoint.received.start).toBeUndefined();
  });

  test('a stream that runs ahead of the clock is closed with 4405 and sending stops', async () => {
    // The endpoint's clock never moves: only the first 100 ms of media fit within the bound.
    const endpoint = await startEndpoint({ maxAheadOfClockMs: 100, now: () => 0 });
    endpoints.push(endpoint);
    const result = await simulateTwilioCall({ url: endpoint.url, accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, durationMs: 10_000 });
    expect(result).toMatchObject({ closeCode: 4405, closeReason: 'STREAM_AHEAD_OF_CLOCK', closedBy: 'server' });
    expect(endpoint.received.media.map((m) => `${m.track}@${m.timestampMs}`)).toEqual(
      [0, 20, 40, 60, 80].flatMap((t) => [`inbound@${t}`, `outbound@${t}`]),
    );
    // The simulator may have written more before the close reached it; the endpoint took none of it.
    expect(result.framesSent).toBeGreaterThanOrEqual(11);
    expect(endpoint.received.stopped).toBe(false);
  });

  test('gives up waiting when the server never closes after stop', async () => {
    const endpoint = await startEndpoint({ maxAheadOfClockMs: 60_000, now: () => 0, closeAfterStop: false });
    endpoints.push(endpoint);
    const result = await simulateTwilioCall({
      url: endpoint.url,
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      mode: 'connect',
      durationMs: 100,
      closeTimeoutMs: 200,
    });
    expect(result).toMatchObject({ closedBy: 'timeout', closeCode: 1006, framesSent: 5 });
    expect(endpoint.received.stopped).toBe(true);
  });
});
