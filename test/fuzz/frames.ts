/**
 * Cheap fast-check arbitraries for hostile ingest frames, shared by the parser properties and the live
 * gateway fuzz test. Generation draws a few integers and applies them to a valid frame, so a run costs
 * microseconds: the point is volume (10^6 frames), not clever search.
 */
import fc from 'fast-check';
import { ErrorCode } from '../../dist/errors/index.js';

export const ACCOUNT_SID = 'AC0123456789abcdef0123456789abcdef';
export const CALL_SID = 'CA11111111111111111111111111111111';
export const STREAM_SID = 'MZ22222222222222222222222222222222';

/** The codes a Twilio frame may be refused with; anything else (INTERNAL above all) is a parser bug. */
export const FRAME_ERROR_CODES: ReadonlySet<string> = new Set([
  ErrorCode.FrameMalformed,
  ErrorCode.FrameUnknownEvent,
  ErrorCode.FrameOutOfOrder,
  ErrorCode.FramePayloadInvalid,
  ErrorCode.StreamAheadOfClock,
  ErrorCode.StreamAccountMismatch,
]);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Frame = { [key: string]: Json };

export interface FrameIds {
  accountSid: string;
  callSid: string;
  streamSid: string;
}

const IDS: FrameIds = { accountSid: ACCOUNT_SID, callSid: CALL_SID, streamSid: STREAM_SID };

/** A valid 20 ms (160-byte) mu-law payload: bytes vary with `salt`, so frames are not all alike. */
export function payloadOf(salt: number, bytes = 160): string {
  const buf = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) buf[i] = (salt * 31 + i * 7) & 0xff;
  return buf.toString('base64');
}

export function startFrame(seq: number, ids: FrameIds = IDS, tracks: string[] = ['inbound', 'outbound']): Frame {
  return {
    event: 'start',
    sequenceNumber: String(seq),
    start: {
      accountSid: ids.accountSid,
      streamSid: ids.streamSid,
      callSid: ids.callSid,
      tracks,
      customParameters: { tenant: 'acme' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    },
    streamSid: ids.streamSid,
  };
}

export function mediaFrame(seq: number, chunk: number, timestampMs: number, ids: FrameIds = IDS, track = 'inbound', salt = seq): Frame {
  return {
    event: 'media',
    sequenceNumber: String(seq),
    media: { track, chunk: String(chunk), timestamp: String(timestampMs), payload: payloadOf(salt) },
    streamSid: ids.streamSid,
  };
}

/** One valid frame of each kind, as Twilio would send it mid-stream (sequence numbers from `seq`). */
export function validFrames(seq: number, ids: FrameIds = IDS): Frame[] {
  return [
    { event: 'connected', protocol: 'Call', version: '1.0.0' },
    startFrame(seq, ids),
    mediaFrame(seq + 1, seq + 1, 20 * seq, ids),
    { event: 'dtmf', streamSid: ids.streamSid, sequenceNumber: String(seq + 2), dtmf: { track: 'inbound_track', digit: '5' } },
    { event: 'mark', sequenceNumber: String(seq + 3), streamSid: ids.streamSid, mark: { name: 'greeting-done' } },
    { event: 'stop', sequenceNumber: String(seq + 4), stop: { accountSid: ids.accountSid, callSid: ids.callSid }, streamSid: ids.streamSid },
  ];
}

/** Values a field gets replaced with: wrong types, huge or negative numbers, unicode, bad and non-canonical base64. */
export const WEIRD: readonly Json[] = [
  null, true, false, 0, -0, -1, 1, 1.5, 1e21, -1e308, 1e308, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2,
  '', ' ', '0', '-1', '1.0', '1e3', '0x10', ' 7', '７', '٣', '1'.repeat(16), '9'.repeat(15), 'NaN', 'Infinity',
  'inbound', 'outbound', 'both', 'INBOUND', 'audio/x-mulaw', '8000', 8000, '1', 1,
  'AC0123456789abcdef0123456789abcdeg', `AC${'0'.repeat(31)}`, `ac${'0'.repeat(32)}`, 'ACé123456789abcdef0123456789abcdef',
  `MZ${'f'.repeat(32)}`, `CA${'f'.repeat(32)}`, STREAM_SID, CALL_SID, ACCOUNT_SID,
  '\u0000', '\ud800', '\udfff\ud800', '😀'.repeat(3), 'e\u0301', '\u202e', '<script>', '__proto__', 'constructor',
  '@@@not*base64@@@', 'AAAA AAAA', 'AAA', 'AA==', 'AB==', 'AAB=', '====', 'AAAA\n', '-_-_', payloadOf(1, 159), payloadOf(1, 8001),
  payloadOf(1, 8000), payloadOf(2, 8), 'A'.repeat(10668), [], [null], ['inbound', 'inbound'], ['outbound'], [[[[[]]]]],
  {}, { event: 'media' }, { __proto__: 'x' } as unknown as Json, { muted: true },
];

const EVENTS: readonly string[] = ['connected', 'start', 'media', 'dtmf', 'mark', 'stop', 'Media', 'teleport', 'toString', '__proto__', ''];

/** Every path to a value inside `value` (the root is the empty path). */
function paths(value: Json, prefix: string[] = [], out: string[][] = []): string[][] {
  out.push(prefix);
  if (value !== null && typeof value === 'object') {
    for (const key of Object.keys(value)) paths((value as Record<string, Json>)[key]!, [...prefix, key], out);
  }
  return out;
}

function clone(frame: Frame): Frame {
  return JSON.parse(JSON.stringify(frame)) as Frame;
}

export interface Mutation {
  frame: number;
  path: number;
  op: number;
  value: number;
  text: number;
  at: number;
  char: number;
}

export const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  frame: fc.nat(),
  path: fc.nat(),
  op: fc.nat(9),
  value: fc.nat(),
  text: fc.nat(7),
  at: fc.nat(),
  char: fc.integer({ min: 0, max: 0xffff }),
});

/**
 * Applies a mutation to one of `frames`: an object-level edit (delete a field, replace it with a weird
 * value, stringify it, wrap it in an array, rename the event, add a junk field), then maybe a text-level
 * one (truncate, insert a UTF-16 unit, duplicate, swap a character).
 */
export function mutate(frames: Frame[], m: Mutation): string {
  const frame = clone(frames[m.frame % frames.length]!);
  const all = paths(frame).filter((p) => p.length > 0);
  const path = all[m.path % all.length]!;
  const parent = path.slice(0, -1).reduce<Json>((v, k) => (v as Record<string, Json>)[k]!, frame) as Record<string, Json>;
  const key = path[path.length - 1]!;
  const weird = WEIRD[m.value % WEIRD.length]!;
  switch (m.op) {
    case 0:
      delete parent[key];
      break;
    case 1:
    case 2:
      parent[key] = weird;
      break;
    case 3:
      parent[key] = typeof parent[key] === 'string' ? Number(parent[key]) : String(parent[key]);
      break;
    case 4:
      parent[key] = [parent[key]!];
      break;
    case 5:
      frame['event'] = EVENTS[m.value % EVENTS.length]!;
      break;
    case 6:
      parent[`x${m.value % 5}`] = weird;
      break;
    case 7:
      if (typeof parent[key] === 'string') parent[key] = (parent[key] as string) + String.fromCharCode(m.char);
      else parent[key] = weird;
      break;
    default:
      break; // only a text-level mutation, or none: a valid frame
  }
  let text = JSON.stringify(frame);
  const at = m.at % (text.length + 1);
  switch (m.text) {
    case 0:
      text = text.slice(0, at);
      break;
    case 1:
      text = text.slice(0, at) + String.fromCharCode(m.char) + text.slice(at);
      break;
    case 2:
      text = text.slice(0, at) + text.slice(at + 1);
      break;
    case 3:
      text = text + text;
      break;
    default:
      break; // the object-level mutation only
  }
  return text;
}

/** A mutated version of a valid frame of any kind (`seq` keeps its sequence numbers plausible). */
export function mutatedFrameArb(seq = 1, ids: FrameIds = IDS): fc.Arbitrary<string> {
  const frames = validFrames(seq, ids);
  return mutationArb.map((m) => mutate(frames, m));
}

/** Any text at all: short strings of any UTF-16 units, JSON-ish tokens, or JSON values. */
export const anyTextArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 20 }),
  fc.array(fc.constantFrom('{', '}', '[', ']', '"event"', ':', ',', '"media"', '"start"', 'null', '1', '"', '\\u0000', ' '), { maxLength: 16 }).map((t) => t.join('')),
);

/** Base64-ish text: canonical payloads, bad characters, wrong padding, non-zero unused bits, url-safe alphabet. */
export const base64ishArb: fc.Arbitrary<string> = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')),
  fc.nat(1000).map((ms) => payloadOf(ms, ms * 8)),
  fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.'), maxLength: 48 }),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat(63)).map(([b, bits]) => {
    // Flip the unused low bits of the last data character: decodes to the same bytes but is not canonical.
    const s = Buffer.from(b).toString('base64');
    const stripped = s.replace(/=+$/, '');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const last = alphabet.indexOf(stripped[stripped.length - 1]!);
    return stripped.slice(0, -1) + alphabet[(last ^ bits) & 63] + s.slice(stripped.length);
  }),
  fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 40 }), fc.nat(), fc.constantFrom('', '=', '==', ' ', '\r\n', '%', '\u00e9')).map(([b, at, junk]) => {
    const s = Buffer.from(b).toString('base64');
    const i = at % (s.length + 1);
    return s.slice(0, i) + junk + s.slice(i);
  }),
);
