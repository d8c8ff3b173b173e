import { describe, expect, test } from 'vitest';
import { closeCodeFor, TwilioStreamSession } from '../../dist/ingest/twilio/index.js';
import type { TwilioSessionSink } from '../../dist/ingest/twilio/index.js';
import { isCallvaultError } from '../../dist/errors/index.js';
import {
  ACCOUNT_SID,
  CALL_SID,
  OTHER_ACCOUNT_SID,
  STREAM_SID,
  concat,
  connected,
  decodeMulaw,
  dtmf,
  mark,
  media,
  rms,
  start,
  stop,
  expectTone,
  toneMulaw,
} from './helpers.js';

type Recorded =
  | { kind: 'start'; info: Parameters<TwilioSessionSink['onStart']>[0] }
  | { kind: 'media'; media: Parameters<TwilioSessionSink['onMedia']>[0] }
  | { kind: 'dtmf'; e: Parameters<TwilioSessionSink['onDtmf']>[0] }
  | { kind: 'mark'; e: Parameters<TwilioSessionSink['onMark']>[0] }
  | { kind: 'stop'; e: Parameters<TwilioSessionSink['onStop']>[0] };

function recordingSink(): { sink: TwilioSessionSink; events: Recorded[] } {
  const events: Recorded[] = [];
  return {
    events,
    sink: {
      onStart: (info) => events.push({ kind: 'start', info }),
      onMedia: (m) => events.push({ kind: 'media', media: m }),
      onDtmf: (e) => events.push({ kind: 'dtmf', e }),
      onMark: (e) => events.push({ kind: 'mark', e }),
      onStop: (e) => events.push({ kind: 'stop', e }),
    },
  };
}

/** A session on a hand-driven clock: `clock.ms` is what `now()` returns. */
function newSession(maxAheadOfClockMs = 10_000, expectedAccountSid: string | null = ACCOUNT_SID) {
  const clock = { ms: 1_700_000_000_000 };
  const { sink, events } = recordingSink();
  const session = new TwilioStreamSession({ now: () => clock.ms, maxAheadOfClockMs, expectedAccountSid }, sink);
  return { session, events, clock };
}

function caught(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

const b64 = (bytes: number): string => Buffer.from(toneMulaw(440, 0, bytes)).toString('base64');
/** 160 bytes encode to 214 significant characters + "=="; the last significant one has 4 unused bits. */
const nonCanonical160 = (() => {
  const good = b64(160);
  const last = good[good.length - 3]!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const flipped = alphabet[alphabet.indexOf(last) ^ 1]!;
  return `${good.slice(0, -3)}${flipped}==`;
})();

const head = [connected(), start()];

describe('TwilioStreamSession rejects every violation with its error and close code', () => {
  test.each([
    { name: 'malformed JSON', frames: ['{"event":"media"'], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'a JSON array', frames: ['[1,2,3]'], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'a JSON string', frames: ['"media"'], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'JSON null', frames: ['null'], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'no event name', frames: ['{"streamSid":"x"}'], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'unknown event', frames: ['{"event":"clear"}'], code: 'FRAME_UNKNOWN_EVENT', close: 4401 },
    { name: 'unknown event after start', frames: [...head, '{"event":"hangup"}'], code: 'FRAME_UNKNOWN_EVENT', close: 4401 },
    {
      name: 'start without callSid',
      frames: [start().replace(`"callSid":"${CALL_SID}",`, '')],
      code: 'FRAME_MALFORMED',
      close: 4400,
    },
    { name: 'start without tracks', frames: [start({ tracks: [] })], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'start with a repeated track', frames: [start({ tracks: ['inbound', 'inbound'] })], code: 'FRAME_MALFORMED', close: 4400 },
    {
      name: 'start with a path-like call SID',
      frames: [start().replace(CALL_SID, '../../../etc/passwd')],
      code: 'FRAME_MALFORMED',
      close: 4400,
    },
    {
      // A-law (audio/x-alaw) is accepted; any other encoding is not.
      name: 'start with L16 audio',
      frames: [start().replace('audio/x-mulaw', 'audio/L16')],
      code: 'FRAME_MALFORMED',
      close: 4400,
    },
    {
      name: 'start at 16 kHz',
      frames: [start().replace('"sampleRate":8000', '"sampleRate":16000')],
      code: 'FRAME_MALFORMED',
      close: 4400,
    },
    {
      name: 'media without payload',
      frames: [...head, JSON.stringify({ event: 'media', sequenceNumber: '2', media: { track: 'inbound', chunk: '1', timestamp: '0' } })],
      code: 'FRAME_MALFORMED',
      close: 4400,
    },
    {
      name: 'media with an unknown track name',
      frames: [...head, media({ seq: 2, track: 'inbound_track' })],
      code: 'FRAME_MALFORMED',
      close: 4400,
    },
    { name: 'media with a negative timestamp', frames: [...head, media({ seq: 2, timestampMs: '-20' })], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'media with a fractional timestamp', frames: [...head, media({ seq: 2, timestampMs: 20.5 })], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'stop without callSid', frames: [...head, '{"event":"stop","sequenceNumber":"2","stop":{"accountSid":"' + ACCOUNT_SID + '"}}'], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'dtmf with two digits', frames: [...head, dtmf(2, '12')], code: 'FRAME_MALFORMED', close: 4400 },
    { name: 'media before start', frames: [connected(), media({ seq: 2 })], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'dtmf before start', frames: [dtmf(2)], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'mark before start', frames: [mark(2)], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'stop before start', frames: [stop(2)], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'a second start', frames: [...head, start({ sequenceNumber: '2' })], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'connected after start', frames: [...head, connected()], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'a repeated sequence number', frames: [...head, media({ seq: 2 }), media({ seq: 2, chunk: 3, timestampMs: 20 })], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'a repeated chunk', frames: [...head, media({ seq: 2, chunk: 1 }), media({ seq: 3, chunk: 1, timestampMs: 20 })], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    {
      name: 'a timestamp going backwards',
      frames: [...head, media({ seq: 2, chunk: 1, timestampMs: 40 }), media({ seq: 3, chunk: 2, timestampMs: 20 })],
      code: 'FRAME_OUT_OF_ORDER',
      close: 4402,
    },
    {
      name: 'media for a track not announced (<Connect><Stream> is inbound only)',
      frames: [connected(), start({ tracks: ['inbound'] }), media({ seq: 2, track: 'outbound' })],
      code: 'FRAME_OUT_OF_ORDER',
      close: 4402,
    },
    {
      name: 'media naming another stream',
      frames: [...head, media({ seq: 2 }).replace(`"streamSid":"${STREAM_SID}"`, '"streamSid":"MZ33333333333333333333333333333333"')],
      code: 'FRAME_OUT_OF_ORDER',
      close: 4402,
    },
    { name: 'stop naming another call', frames: [...head, stop(2, ACCOUNT_SID, 'CA99999999999999999999999999999999')], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'input after stop', frames: [...head, stop(2), media({ seq: 3 })], code: 'FRAME_OUT_OF_ORDER', close: 4402 },
    { name: 'start from another account', frames: [start({ accountSid: OTHER_ACCOUNT_SID })], code: 'STREAM_ACCOUNT_MISMATCH', close: 4403 },
    { name: 'stop from another account', frames: [...head, stop(2, OTHER_ACCOUNT_SID)], code: 'STREAM_ACCOUNT_MISMATCH', close: 4403 },
    { name: 'base64 with an illegal character', frames: [...head, media({ seq: 2, payload: `${b64(160).slice(0, 10)}!${b64(160).slice(11)}` })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: 'base64 with a line break', frames: [...head, media({ seq: 2, payload: `${b64(160).slice(0, 76)}\n${b64(160).slice(76)}` })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: 'base64 missing its padding', frames: [...head, media({ seq: 2, payload: b64(160).replace(/=+$/, '') })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: 'base64 with too much padding', frames: [...head, media({ seq: 2, payload: `${b64(160)}==` })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: 'base64 with non-zero unused bits', frames: [...head, media({ seq: 2, payload: nonCanonical160 })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: 'an empty payload', frames: [...head, media({ seq: 2, payload: '' })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: '159 bytes (not whole milliseconds)', frames: [...head, media({ seq: 2, bytes: 159 })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
    { name: '1001 ms in one frame', frames: [...head, media({ seq: 2, bytes: 8008 })], code: 'FRAME_PAYLOAD_INVALID', close: 4404 },
  ])('$name → $code / $close', ({ frames, code, close }) => {
    const { session, events } = newSession();
    const prefix = frames.slice(0, -1);
    for (const frame of prefix) session.handle(frame);
    const eventsBefore = events.length;

    const err = caught(() => session.handle(frames.at(-1)!));

    expect(isCallvaultError(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    expect(closeCodeFor((err as { code: never }).code)).toBe(close);
    expect(events.length).toBe(eventsBefore);
    expect(session.state).toBe('failed');
  });

  test('after an error every further frame is refused with FRAME_OUT_OF_ORDER, even a valid one', () => {
    const { session, events } = newSession();
    session.handle(start());
    expect(() => session.handle(media({ seq: 2, bytes: 159 }))).toThrow(expect.objectContaining({ code: 'FRAME_PAYLOAD_INVALID' }));
    const received = events.length;
    for (const frame of [media({ seq: 3, chunk: 3, timestampMs: 20 }), stop(4)]) {
      expect(() => session.handle(frame)).toThrow(expect.objectContaining({ code: 'FRAME_OUT_OF_ORDER' }));
    }
    expect(events.length).toBe(received);
  });

  test('a sink that throws kills the session and surfaces as a CallvaultError', () => {
    const session = new TwilioStreamSession(
      { now: () => 0, maxAheadOfClockMs: 1000, expectedAccountSid: ACCOUNT_SID },
      {
        onStart: () => {
          throw new Error('database down');
        },
        onMedia: () => undefined,
        onDtmf: () => undefined,
        onMark: () => undefined,
        onStop: () => undefined,
      },
    );
    const err = caught(() => session.handle(start()));
    expect(err).toMatchObject({ code: 'INTERNAL' });
    expect(closeCodeFor('INTERNAL')).toBe(1011);
    expect(session.state).toBe('failed');
  });
});

describe('wall-clock rule: media may run ahead of the clock by at most maxAheadOfClockMs', () => {
  // maxAhead 1000 ms; the clock has advanced `elapsedMs` since start; one frame of `bytes` at `timestampMs`.
  test.each([
    { elapsedMs: 0, timestampMs: 980, bytes: 160, accepted: true, why: 'ends exactly at the bound' },
    { elapsedMs: 0, timestampMs: 981, bytes: 160, accepted: false, why: 'ends 1 ms past the bound' },
    { elapsedMs: 0, timestampMs: 0, bytes: 8000, accepted: true, why: 'a full second frame ending at the bound' },
    { elapsedMs: 0, timestampMs: 1, bytes: 8000, accepted: false, why: 'a full second frame 1 ms late' },
    { elapsedMs: 5000, timestampMs: 5980, bytes: 160, accepted: true, why: 'at the bound after the clock moved' },
    { elapsedMs: 5000, timestampMs: 5981, bytes: 160, accepted: false, why: 'past the bound after the clock moved' },
    { elapsedMs: 60_000, timestampMs: 20, bytes: 160, accepted: true, why: 'far behind the clock (late audio is fine)' },
  ])('$why', ({ elapsedMs, timestampMs, bytes, accepted }) => {
    const { session, events, clock } = newSession(1000);
    session.handle(start());
    clock.ms += elapsedMs;
    const err = caught(() => session.handle(media({ seq: 2, timestampMs, bytes })));
    if (accepted) {
      expect(err).toBeUndefined();
      expect(events.at(-1)).toMatchObject({ kind: 'media', media: { timestampMs } });
    } else {
      expect(err).toMatchObject({ code: 'STREAM_AHEAD_OF_CLOCK' });
      expect(closeCodeFor('STREAM_AHEAD_OF_CLOCK')).toBe(4405);
    }
  });

  test('a replay faster than real time is accepted while it stays within the bound, then refused', () => {
    const { session, events, clock } = newSession(200);
    session.handle(start());
    // The clock advances 10 ms per 20 ms frame: the stream gains 10 ms on the clock each frame.
    let refusedAt: number | undefined;
    for (let i = 0; i < 40 && refusedAt === undefined; i++) {
      clock.ms += 10;
      const err = caught(() => session.handle(media({ seq: i + 2, chunk: i + 1, timestampMs: i * 20 })));
      if (err) {
        expect(err).toMatchObject({ code: 'STREAM_AHEAD_OF_CLOCK' });
        refusedAt = i;
      }
    }
    // Frame i ends at 20i+20 with 10i+10 elapsed: allowed while 20i+20 <= 10i+10+200, i.e. i <= 19.
    expect(refusedAt).toBe(20);
    expect(events.filter((e) => e.kind === 'media')).toHaveLength(20);
  });
});

describe('a good session drives the sink', () => {
  test('connected, start, media on both tracks, dtmf, mark, stop', () => {
    const { session, events, clock } = newSession(10_000);
    const frames = [connected(), start({ customParameters: { tenant: 'acme', recording: '{"enabled":true}' } })];
    let seq = 1;
    // 200 ms of 440 Hz inbound and 1000 Hz outbound, interleaved like Twilio, numbers sometimes as numbers.
    for (let i = 0; i < 10; i++) {
      for (const [track, hz] of [['inbound', 440], ['outbound', 1000]] as const) {
        seq += 1;
        const payload = Buffer.from(toneMulaw(hz, i * 160, 160)).toString('base64');
        frames.push(
          i % 2 === 0
            ? media({ seq, track, chunk: i + 1, timestampMs: i * 20, payload })
            : media({ seq, track, chunk: i + 1, timestampMs: i * 20, payload }).replace(/"chunk":"(\d+)","timestamp":"(\d+)"/, '"chunk":$1,"timestamp":$2'),
        );
      }
      if (i === 4) frames.push(dtmf(++seq, '#'));
      if (i === 6) frames.push(mark(++seq, 'prompt-1'));
    }
    frames.push(stop(++seq));

    for (const frame of frames) {
      clock.ms += 20;
      session.handle(frame);
    }

    expect(session.state).toBe('stopped');
    expect(events[0]).toEqual({
      kind: 'start',
      info: {
        streamSid: STREAM_SID,
        callSid: CALL_SID,
        accountSid: ACCOUNT_SID,
        tracks: ['inbound', 'outbound'],
        customParameters: { tenant: 'acme', recording: '{"enabled":true}' },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });
    expect(events.map((e) => e.kind)).toEqual([
      'start',
      ...Array(10).fill('media'),
      'dtmf',
      ...Array(4).fill('media'),
      'mark',
      ...Array(6).fill('media'),
      'stop',
    ]);
    expect(events.find((e) => e.kind === 'dtmf')).toEqual({ kind: 'dtmf', e: { track: 'inbound_track', digit: '#' } });
    expect(events.find((e) => e.kind === 'mark')).toEqual({ kind: 'mark', e: { name: 'prompt-1' } });
    expect(events.at(-1)).toEqual({ kind: 'stop', e: { reason: 'stop' } });

    for (const [track, hz] of [['inbound', 440], ['outbound', 1000]] as const) {
      const frames = events.flatMap((e) => (e.kind === 'media' && e.media.track === track ? [e.media] : []));
      expect(frames.map((f) => f.timestampMs)).toEqual([0, 20, 40, 60, 80, 100, 120, 140, 160, 180]);
      expect(frames.map((f) => f.chunk)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      const audio = decodeMulaw(concat(frames.map((f) => f.payload)));
      expect(audio.length).toBe(1600);
      expectTone(audio, hz);
      expect(rms(audio) / ((0.5 * 32767) / Math.SQRT2)).toBeGreaterThan(0.97);
      expect(rms(audio) / ((0.5 * 32767) / Math.SQRT2)).toBeLessThan(1.03);
    }
  });

  test('connected is optional and a dtmf timestamp is passed on when Twilio sends one', () => {
    const { session, events } = newSession();
    session.handle(start({ tracks: ['inbound'] }));
    session.handle(media({ seq: 2, track: 'inbound', chunk: 1, timestampMs: 0 }));
    session.handle(
      JSON.stringify({ event: 'dtmf', sequenceNumber: 3, extra: { ignored: true }, dtmf: { track: 'inbound_track', digit: '7', timestamp: '20' } }),
    );
    session.handle(stop(4));
    expect(events.map((e) => e.kind)).toEqual(['start', 'media', 'dtmf', 'stop']);
    expect(events[2]).toEqual({ kind: 'dtmf', e: { track: 'inbound_track', digit: '7', timestampMs: 20 } });
  });

  test('expectedAccountSid null accepts any account but holds stop to the account of start', () => {
    const { session } = newSession(10_000, null);
    session.handle(start({ accountSid: OTHER_ACCOUNT_SID }));
    expect(session.startInfo?.accountSid).toBe(OTHER_ACCOUNT_SID);
    expect(() => session.handle(stop(2, ACCOUNT_SID))).toThrow(expect.objectContaining({ code: 'STREAM_ACCOUNT_MISMATCH' }));
  });
});
