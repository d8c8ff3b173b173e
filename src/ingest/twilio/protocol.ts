/**
 * The Twilio Media Streams wire protocol: JSON text frames `connected`, `start`, `media`, `dtmf`,
 * `mark` and `stop`. Parsing is lenient where Twilio itself varies (numbers sent as strings, extra
 * fields, optional `connected`) and strict where a recording's integrity or our storage layout
 * depends on it (SID formats, audio format, payload encoding and size).
 */
import { z } from 'zod';
import { UUID_PATTERN } from '../../config/index.js';
import { CallvaultError, ErrorCode } from '../../errors/index.js';

export { TWILIO_CLOSE_CODES, closeCodeFor, closeFrameFor, type TwilioCloseCode } from './close-codes.js';

/** Twilio streams 8 kHz mono G.711 (µ-law, or A-law): one byte per sample, so 8 bytes per millisecond. */
export const TWILIO_SAMPLE_RATE = 8000;
export const TWILIO_BYTES_PER_MS = TWILIO_SAMPLE_RATE / 1000;
/** A single media frame longer than this is not something Twilio sends and would stall alignment. */
export const MAX_MEDIA_PAYLOAD_MS = 1000;
const MAX_MEDIA_PAYLOAD_BYTES = MAX_MEDIA_PAYLOAD_MS * TWILIO_BYTES_PER_MS;
const MAX_MEDIA_PAYLOAD_BASE64_CHARS = Math.ceil(MAX_MEDIA_PAYLOAD_BYTES / 3) * 4;

export type TwilioTrack = 'inbound' | 'outbound';

/** Twilio sends counters as strings ("1") but a lenient peer or replay tool may send numbers. */
const wholeNumber = z.union([
  z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  z
    .string()
    .regex(/^\d{1,15}$/, 'expected a whole number')
    .transform(Number),
]);

// SIDs end up in object keys and database rows, so only Twilio's exact shapes are accepted.
const accountSid = z.string().regex(/^AC[0-9a-fA-F]{32}$/, 'expected an AC… account SID');
const callSid = z.string().regex(/^CA[0-9a-fA-F]{32}$/, 'expected a CA… call SID');
const streamSid = z.string().regex(/^MZ[0-9a-fA-F]{32}$/, 'expected an MZ… stream SID');

const track = z.enum(['inbound', 'outbound']);

const mediaFormat = z.object({
  // G.711 µ-law (PCMU, Twilio's) or A-law (PCMA, e.g. SIP trunks and regions that use it).
  encoding: z.enum(['audio/x-mulaw', 'audio/x-alaw']),
  sampleRate: z.union([z.literal(8000), z.literal('8000').transform(() => 8000 as const)]),
  channels: z.union([z.literal(1), z.literal('1').transform(() => 1 as const)]),
});
export type TwilioMediaFormat = z.infer<typeof mediaFormat>;

const ConnectedSchema = z.object({
  event: z.literal('connected'),
  protocol: z.string().optional(),
  version: z.string().optional(),
});

const StartSchema = z.object({
  event: z.literal('start'),
  sequenceNumber: wholeNumber.optional(),
  streamSid: streamSid.optional(),
  start: z.object({
    accountSid,
    streamSid,
    callSid,
    tracks: z
      .array(track)
      .min(1)
      .refine((tracks) => new Set(tracks).size === tracks.length, 'tracks must not repeat'),
    customParameters: z.record(z.string(), z.string()).default({}),
    mediaFormat,
  }),
});

const MediaSchema = z.object({
  event: z.literal('media'),
  sequenceNumber: wholeNumber.optional(),
  streamSid: streamSid.optional(),
  media: z.object({
    track,
    chunk: wholeNumber.refine((n) => n >= 1, 'chunks count from 1'),
    timestamp: wholeNumber,
    payload: z.string(),
  }),
});

const DtmfSchema = z.object({
  event: z.literal('dtmf'),
  sequenceNumber: wholeNumber.optional(),
  streamSid: streamSid.optional(),
  dtmf: z.object({
    track: z.string().min(1).max(32),
    digit: z.string().regex(/^[0-9A-Da-d*#]$/, 'expected one DTMF digit'),
    timestamp: wholeNumber.optional(),
  }),
});

const MarkSchema = z.object({
  event: z.literal('mark'),
  sequenceNumber: wholeNumber.optional(),
  streamSid: streamSid.optional(),
  mark: z.object({ name: z.string().max(256) }),
});

const StopSchema = z.object({
  event: z.literal('stop'),
  sequenceNumber: wholeNumber.optional(),
  streamSid: streamSid.optional(),
  stop: z.object({ accountSid, callSid }),
});

const TwilioMessageSchema = z.discriminatedUnion('event', [
  ConnectedSchema,
  StartSchema,
  MediaSchema,
  DtmfSchema,
  MarkSchema,
  StopSchema,
]);

/**
 * Whose Media Streams these are. SignalWire speaks Twilio's protocol with its own identifiers: the project id
 * (its AccountSid) and the call and stream SIDs are UUIDs. Each dialect accepts only its own shapes, so the
 * SignalWire schema relaxes nothing for Twilio streams, and nothing but the three SIDs for SignalWire ones.
 */
export type StreamDialect = 'twilio' | 'signalwire';

const projectId = z.string().regex(UUID_PATTERN, 'expected a SignalWire project id (UUID)');
const uuidCallSid = z.string().regex(UUID_PATTERN, 'expected a SignalWire call SID (UUID)');
const uuidStreamSid = z.string().regex(UUID_PATTERN, 'expected a SignalWire stream SID (UUID)');

const SignalWireMessageSchema = z.discriminatedUnion('event', [
  ConnectedSchema,
  StartSchema.extend({
    streamSid: uuidStreamSid.optional(),
    start: StartSchema.shape.start.extend({ accountSid: projectId, streamSid: uuidStreamSid, callSid: uuidCallSid }),
  }),
  MediaSchema.extend({ streamSid: uuidStreamSid.optional() }),
  DtmfSchema.extend({ streamSid: uuidStreamSid.optional() }),
  MarkSchema.extend({ streamSid: uuidStreamSid.optional() }),
  StopSchema.extend({ streamSid: uuidStreamSid.optional(), stop: z.object({ accountSid: projectId, callSid: uuidCallSid }) }),
]);

const MESSAGE_SCHEMAS = { twilio: TwilioMessageSchema, signalwire: SignalWireMessageSchema } as const;
const STREAM_SID_PATTERNS: Record<StreamDialect, RegExp> = { twilio: /^MZ[0-9a-fA-F]{32}$/, signalwire: UUID_PATTERN };

export type TwilioMessage = z.infer<typeof TwilioMessageSchema>;
export type TwilioConnectedMessage = z.infer<typeof ConnectedSchema>;
export type TwilioStartMessage = z.infer<typeof StartSchema>;
export type TwilioMediaMessage = z.infer<typeof MediaSchema>;
export type TwilioDtmfMessage = z.infer<typeof DtmfSchema>;
export type TwilioMarkMessage = z.infer<typeof MarkSchema>;
export type TwilioStopMessage = z.infer<typeof StopSchema>;
export type TwilioEvent = TwilioMessage['event'];

export const TWILIO_EVENTS: readonly TwilioEvent[] = ['connected', 'start', 'media', 'dtmf', 'mark', 'stop'];

/**
 * Parses one text frame. Throws FRAME_MALFORMED for anything that is not a JSON object matching
 * the schema of its event, FRAME_UNKNOWN_EVENT for an event Twilio does not define.
 * The media payload is left as base64: see `decodeMediaPayload`.
 */
export function parseTwilioMessage(text: string, dialect: StreamDialect = 'twilio'): TwilioMessage {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // No cause: V8's parse error quotes the frame around the fault, and a start frame may hold a client key.
    throw new CallvaultError(ErrorCode.FrameMalformed, 'frame is not valid JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CallvaultError(ErrorCode.FrameMalformed, 'frame is not a JSON object');
  }
  const event = (json as { event?: unknown }).event;
  if (typeof event !== 'string') {
    throw new CallvaultError(ErrorCode.FrameMalformed, 'frame has no event name');
  }
  if (!(TWILIO_EVENTS as readonly string[]).includes(event)) {
    throw new CallvaultError(ErrorCode.FrameUnknownEvent, 'frame has an unknown event', {
      // Bounded so a hostile peer cannot inflate our logs.
      details: { event: event.slice(0, 64) },
    });
  }
  // The hot path: a media frame that is exactly valid skips zod's generic machinery. Anything the fast path
  // does not accept as it stands goes through the schema, which gives the same result or the precise error.
  if (event === 'media') {
    const fast = fastMediaMessage(json as Record<string, unknown>, dialect);
    if (fast) return fast;
  }
  return parseWithSchema(json, event, dialect);
}

/** The schema path alone (what the fast path must agree with; the tests compare the two). */
export function parseTwilioMessageWithSchema(text: string, dialect: StreamDialect = 'twilio'): TwilioMessage {
  const json: unknown = JSON.parse(text);
  const event = (json as { event?: unknown } | null)?.event;
  return parseWithSchema(json, typeof event === 'string' ? event : '', dialect);
}

function parseWithSchema(json: unknown, event: string, dialect: StreamDialect): TwilioMessage {
  const result = MESSAGE_SCHEMAS[dialect].safeParse(json);
  if (!result.success) {
    throw new CallvaultError(ErrorCode.FrameMalformed, `${event} frame does not match the Twilio schema`, {
      cause: result.error,
      details: {
        event,
        issues: result.error.issues.slice(0, 10).map((i) => ({ path: i.path.join('.'), message: i.message })),
      },
    });
  }
  return result.data;
}

const WHOLE_NUMBER_STRING = /^\d{1,15}$/;

/** A counter as `wholeNumber` accepts it, or undefined when the schema must judge it. */
function fastWholeNumber(value: unknown): number | undefined {
  if (typeof value === 'string') return WHOLE_NUMBER_STRING.test(value) ? Number(value) : undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  return undefined;
}

const MEDIA_KEYS = new Set(['event', 'sequenceNumber', 'streamSid', 'media']);
const MEDIA_BODY_KEYS = new Set(['track', 'chunk', 'timestamp', 'payload']);

/**
 * MediaSchema, by hand, for frames that satisfy it exactly: the same fields, the same checks, the same
 * output (unknown keys dropped). Returns null whenever anything is off, so the schema decides.
 */
function fastMediaMessage(json: Record<string, unknown>, dialect: StreamDialect): TwilioMediaMessage | null {
  for (const key in json) if (!MEDIA_KEYS.has(key)) return null;
  const media = json['media'];
  if (typeof media !== 'object' || media === null || Array.isArray(media)) return null;
  const body = media as Record<string, unknown>;
  for (const key in body) if (!MEDIA_BODY_KEYS.has(key)) return null;
  const track = body['track'];
  if (track !== 'inbound' && track !== 'outbound') return null;
  const chunk = fastWholeNumber(body['chunk']);
  const timestamp = fastWholeNumber(body['timestamp']);
  const payload = body['payload'];
  if (chunk === undefined || chunk < 1 || timestamp === undefined || typeof payload !== 'string') return null;
  const message: TwilioMediaMessage = { event: 'media', media: { track, chunk, timestamp, payload } };
  if ('sequenceNumber' in json) {
    const sequenceNumber = fastWholeNumber(json['sequenceNumber']);
    if (sequenceNumber === undefined) return null;
    message.sequenceNumber = sequenceNumber;
  }
  if ('streamSid' in json) {
    const sid = json['streamSid'];
    if (typeof sid !== 'string' || !STREAM_SID_PATTERNS[dialect].test(sid)) return null;
    message.streamSid = sid;
  }
  return message;
}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Base64 alphabet values, for the canonical-padding check. */
const BASE64_VALUE = new Map([...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].map((c, i) => [c, i]));

/**
 * Decodes a media payload to mu-law bytes. `Buffer.from(s, 'base64')` silently skips junk and
 * accepts missing padding, which would turn a corrupted frame into wrong-but-plausible audio,
 * so the text must be canonical base64. The result must be a positive whole number of
 * milliseconds (timestamps have 1 ms resolution) and at most MAX_MEDIA_PAYLOAD_MS.
 * Throws FRAME_PAYLOAD_INVALID.
 */
export function decodeMediaPayload(base64: string): Buffer {
  if (base64.length === 0) {
    throw new CallvaultError(ErrorCode.FramePayloadInvalid, 'media payload is empty');
  }
  if (base64.length > MAX_MEDIA_PAYLOAD_BASE64_CHARS) {
    throw new CallvaultError(ErrorCode.FramePayloadInvalid, `media payload exceeds ${MAX_MEDIA_PAYLOAD_MS} ms`, {
      details: { base64Length: base64.length },
    });
  }
  if (!STRICT_BASE64.test(base64)) {
    throw new CallvaultError(ErrorCode.FramePayloadInvalid, 'media payload is not canonical base64');
  }
  // Non-zero bits in the last character's unused positions decode "fine" but are not canonical: with the
  // structure checked above, that character is the only thing left to check (no re-encode needed).
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  if (padding > 0) {
    const last = BASE64_VALUE.get(base64[base64.length - padding - 1]!)!;
    if ((last & (padding === 2 ? 0x0f : 0x03)) !== 0) {
      throw new CallvaultError(ErrorCode.FramePayloadInvalid, 'media payload is not canonical base64');
    }
  }
  const bytes = Buffer.from(base64, 'base64');
  mediaPayloadDurationMs(bytes.length);
  return bytes;
}

/** Duration of a mu-law payload of `byteLength` bytes; throws FRAME_PAYLOAD_INVALID when not allowed. */
export function mediaPayloadDurationMs(byteLength: number): number {
  if (byteLength === 0 || byteLength % TWILIO_BYTES_PER_MS !== 0 || byteLength > MAX_MEDIA_PAYLOAD_BYTES) {
    throw new CallvaultError(
      ErrorCode.FramePayloadInvalid,
      `media payload must be a whole number of milliseconds between 1 and ${MAX_MEDIA_PAYLOAD_MS} (multiples of ${TWILIO_BYTES_PER_MS} bytes)`,
      { details: { bytes: byteLength } },
    );
  }
  return byteLength / TWILIO_BYTES_PER_MS;
}
