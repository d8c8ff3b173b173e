/**
 * The encrypted recording container (format version 1). docs/recording-format.md is the specification;
 * keep the two in step (test/crypto/format-doc.test.ts checks the worked example).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CallvaultError, ErrorCode } from '../errors/index.js';

export type KeyMode = 'server' | 'client';
/**
 * `pcm_s16le`: interleaved PCM16, what callvault records itself. `mp3`: opaque MPEG audio bytes kept exactly
 * as a finished recording arrived (ElevenLabs), since decoding them would need a codec dependency.
 */
export type SampleFormat = 'pcm_s16le' | 'mp3';

/**
 * scrypt cost parameters of a client-mode recording whose client key is a passphrase (key mode `03`):
 * N = 2^log2N, block size r, parallelism p. Recorded in the header so a reader can derive the same key.
 */
export interface ScryptParams {
  log2N: number;
  r: number;
  p: number;
}
/** Bounds a reader accepts, so a crafted header cannot make it spend unbounded memory or time. */
export const SCRYPT_LIMITS = { log2N: { min: 10, max: 20 }, r: { min: 1, max: 32 }, p: { min: 1, max: 16 }, maxMemoryBytes: 256 * 1024 * 1024 } as const;
/** Bytes of the scrypt parameters after the key id (key mode `03` only): log2N u8, r u16, p u16. */
export const SCRYPT_PARAMS_LENGTH = 5;

/** Memory scrypt needs for these parameters (128 · N · r bytes). */
export function scryptMemoryBytes(params: ScryptParams): number {
  return 128 * 2 ** params.log2N * params.r;
}

export interface ContainerHeader {
  /** 1: audio (every recording). 2: any other content, named by `contentType` (a call's transcript, events, metadata). */
  version: 1 | 2;
  /** `none` exactly in version 2: the plaintext is not audio but the bytes of `contentType`. */
  sampleFormat: SampleFormat | 'none';
  /** PCM: 1..384000. MP3: as its first frame header declares, or 0 when unknown. */
  sampleRate: number;
  /** PCM: 1 or 2. MP3: as its first frame header declares, or 0 when unknown. */
  channels: 0 | 1 | 2;
  keyMode: KeyMode;
  /** Server mode: id of the master key that wraps the data key. Client mode: optional label, often empty. */
  keyId: string;
  salt: Uint8Array;
  noncePrefix: Uint8Array;
  /** Plaintext bytes in every segment but the last. */
  segmentSize: number;
  /** Client mode only: the client key is a passphrase, stretched with scrypt (key mode `03`). Absent: HKDF (`02`). */
  scrypt?: ScryptParams;
  /** Version 2 only: the plaintext's media type, e.g. `application/json` (printable ASCII, 1..127 bytes). */
  contentType?: string;
}

/** `\x89CVREC\r\n`: the high byte and CR LF catch 7-bit and newline-translating transports, as in PNG. */
export const CONTAINER_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x43, 0x56, 0x52, 0x45, 0x43, 0x0d, 0x0a);
export const CONTAINER_VERSION = 1;
/** Version of objects that are not audio: the version 1 header plus a content type. Recordings stay version 1. */
export const DOCUMENT_CONTAINER_VERSION = 2;
export const MAX_CONTENT_TYPE_BYTES = 127;
export const DATA_KEY_LENGTH = 32;
export const SALT_LENGTH = 32;
export const NONCE_PREFIX_LENGTH = 7;
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
export const DEFAULT_SEGMENT_SIZE = 16384;
export const MAX_SEGMENT_SIZE = 1 << 24;
export const MAX_KEY_ID_BYTES = 255;
/** Bytes before the key id; the key id length is the last of them. */
export const FIXED_HEADER_LENGTH = 60;
/** A reader that fetches this many bytes (or the whole object, if smaller) always holds the full header. */
export const MAX_HEADER_LENGTH = FIXED_HEADER_LENGTH + MAX_KEY_ID_BYTES + SCRYPT_PARAMS_LENGTH;
/** The same for any version: a version 2 header adds its content type (length byte and up to 127 bytes). */
export const MAX_ANY_HEADER_LENGTH = MAX_HEADER_LENGTH + 1 + MAX_CONTENT_TYPE_BYTES;
export const MIN_SAMPLE_RATE = 1;
export const MAX_SAMPLE_RATE = 384000;
/** The segment counter is a 32-bit field; one more segment would reuse a nonce. */
export const MAX_SEGMENTS = 2 ** 32;

const SAMPLE_FORMAT_NONE = 0;
const SAMPLE_FORMAT_PCM_S16LE = 1;
const SAMPLE_FORMAT_MP3 = 2;
const SAMPLE_FORMAT_CODES: Readonly<Record<SampleFormat, number>> = { pcm_s16le: SAMPLE_FORMAT_PCM_S16LE, mp3: SAMPLE_FORMAT_MP3 };
const KEY_MODE_SERVER = 1;
const KEY_MODE_CLIENT = 2;
const KEY_MODE_CLIENT_PASSPHRASE = 3;
const FLAG_NOT_FINAL = 0;
const FLAG_FINAL = 1;

const OFFSET = {
  magic: 0,
  version: 8,
  sampleFormat: 9,
  channels: 10,
  sampleRate: 11,
  keyMode: 15,
  segmentSize: 16,
  noncePrefix: 20,
  salt: 27,
  keyIdLength: 59,
  keyId: 60,
} as const;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(message: string, details?: Record<string, unknown>): CallvaultError {
  return new CallvaultError(ErrorCode.ContainerInvalid, message, details ? { details } : {});
}

function encodeKeyId(keyId: string): Uint8Array {
  const bytes = utf8.encode(keyId);
  // Lone surrogates would be replaced on encoding, and the id read back would not match the one written.
  if (strictUtf8.decode(bytes) !== keyId) throw invalid('key id is not valid Unicode text');
  if (bytes.length > MAX_KEY_ID_BYTES) throw invalid(`key id is longer than ${MAX_KEY_ID_BYTES} bytes in UTF-8`);
  return bytes;
}

const CONTENT_TYPE_PATTERN = /^[\x21-\x7e][\x20-\x7e]{0,126}$/;

function validateDocumentFields(h: ContainerHeader): void {
  if (h.sampleFormat !== 'none' || h.channels !== 0 || h.sampleRate !== 0) {
    throw invalid('a version 2 object has sample format, channels and sample rate 0', { sampleFormat: h.sampleFormat, channels: h.channels, sampleRate: h.sampleRate });
  }
  if (h.contentType === undefined || !CONTENT_TYPE_PATTERN.test(h.contentType)) throw invalid('content type must be 1..127 bytes of printable ASCII');
}

function validateHeaderFields(h: ContainerHeader): void {
  if (h.version !== CONTAINER_VERSION && h.version !== DOCUMENT_CONTAINER_VERSION) throw invalid('unsupported container version', { version: h.version });
  if (h.version === DOCUMENT_CONTAINER_VERSION) validateDocumentFields(h);
  else if (h.contentType !== undefined) throw invalid('a content type needs container version 2');
  else if (h.sampleFormat !== 'pcm_s16le' && h.sampleFormat !== 'mp3') throw invalid('unsupported sample format', { sampleFormat: h.sampleFormat });
  const audio = h.version === CONTAINER_VERSION;
  // Compressed audio is stored without decoding it, so its rate and layout may be unknown (0); PCM's never are.
  const unknownAllowed = h.sampleFormat === 'mp3';
  const minSampleRate = unknownAllowed ? 0 : MIN_SAMPLE_RATE;
  if (audio && (!Number.isInteger(h.sampleRate) || h.sampleRate < minSampleRate || h.sampleRate > MAX_SAMPLE_RATE)) {
    throw invalid(`sample rate must be an integer in ${minSampleRate}..${MAX_SAMPLE_RATE}`, { sampleRate: h.sampleRate });
  }
  if (audio && h.channels !== 1 && h.channels !== 2 && !(unknownAllowed && h.channels === 0)) {
    throw invalid(unknownAllowed ? 'channels must be 0 (unknown), 1 or 2' : 'channels must be 1 or 2', { channels: h.channels });
  }
  if (!Number.isInteger(h.segmentSize) || h.segmentSize < 1 || h.segmentSize > MAX_SEGMENT_SIZE) {
    throw invalid(`segment size must be an integer in 1..${MAX_SEGMENT_SIZE}`, { segmentSize: h.segmentSize });
  }
  if (h.keyMode !== 'server' && h.keyMode !== 'client') throw invalid('key mode must be server or client');
  if (h.scrypt !== undefined) {
    if (h.keyMode !== 'client') throw invalid('scrypt parameters belong to client key mode only');
    const { log2N, r, p } = h.scrypt;
    const within = (v: number, b: { min: number; max: number }) => Number.isInteger(v) && v >= b.min && v <= b.max;
    if (!within(log2N, SCRYPT_LIMITS.log2N) || !within(r, SCRYPT_LIMITS.r) || !within(p, SCRYPT_LIMITS.p) || scryptMemoryBytes(h.scrypt) > SCRYPT_LIMITS.maxMemoryBytes) {
      throw invalid('scrypt parameters are out of bounds', { log2N, r, p });
    }
  }
  // A server-mode recording without a master key id could never be unwrapped after a rotation.
  if (h.keyMode === 'server' && h.keyId.length === 0) throw invalid('server key mode requires a key id');
  if (h.salt.length !== SALT_LENGTH) throw invalid(`salt must be ${SALT_LENGTH} bytes`);
  if (h.noncePrefix.length !== NONCE_PREFIX_LENGTH) throw invalid(`nonce prefix must be ${NONCE_PREFIX_LENGTH} bytes`);
}

export function serializeHeader(h: ContainerHeader): Uint8Array {
  validateHeaderFields(h);
  const keyId = encodeKeyId(h.keyId);
  const contentType = h.contentType === undefined ? undefined : utf8.encode(h.contentType);
  const kdfEnd = FIXED_HEADER_LENGTH + keyId.length + (h.scrypt ? SCRYPT_PARAMS_LENGTH : 0);
  const out = new Uint8Array(kdfEnd + (contentType ? 1 + contentType.length : 0));
  const view = new DataView(out.buffer);
  out.set(CONTAINER_MAGIC, OFFSET.magic);
  out[OFFSET.version] = h.version;
  out[OFFSET.sampleFormat] = h.sampleFormat === 'none' ? SAMPLE_FORMAT_NONE : SAMPLE_FORMAT_CODES[h.sampleFormat];
  out[OFFSET.channels] = h.channels;
  view.setUint32(OFFSET.sampleRate, h.sampleRate, false);
  out[OFFSET.keyMode] = h.keyMode === 'server' ? KEY_MODE_SERVER : h.scrypt ? KEY_MODE_CLIENT_PASSPHRASE : KEY_MODE_CLIENT;
  view.setUint32(OFFSET.segmentSize, h.segmentSize, false);
  out.set(h.noncePrefix, OFFSET.noncePrefix);
  out.set(h.salt, OFFSET.salt);
  out[OFFSET.keyIdLength] = keyId.length;
  out.set(keyId, OFFSET.keyId);
  if (h.scrypt) {
    const at = OFFSET.keyId + keyId.length;
    out[at] = h.scrypt.log2N;
    view.setUint16(at + 1, h.scrypt.r, false);
    view.setUint16(at + 3, h.scrypt.p, false);
  }
  if (contentType) {
    out[kdfEnd] = contentType.length;
    out.set(contentType, kdfEnd + 1);
  }
  return out;
}

/**
 * How long the header is, judging from a prefix of the object, or `undefined` when the prefix is too short
 * to tell. Throws CONTAINER_INVALID as soon as the prefix cannot begin a container, so a stream of
 * something else is rejected without waiting for more bytes.
 */
export function headerLengthFromPrefix(prefix: Uint8Array): number | undefined {
  const magicBytes = Math.min(prefix.length, CONTAINER_MAGIC.length);
  for (let i = 0; i < magicBytes; i++) {
    if (prefix[i] !== CONTAINER_MAGIC[i]) throw invalid('not a callvault recording (bad magic)');
  }
  const version = prefix[OFFSET.version];
  if (prefix.length > OFFSET.version && version !== CONTAINER_VERSION && version !== DOCUMENT_CONTAINER_VERSION) {
    throw invalid('unsupported container version', { version });
  }
  if (prefix.length <= OFFSET.keyIdLength) return undefined;
  const kdfParams = prefix[OFFSET.keyMode] === KEY_MODE_CLIENT_PASSPHRASE ? SCRYPT_PARAMS_LENGTH : 0;
  const kdfEnd = FIXED_HEADER_LENGTH + (prefix[OFFSET.keyIdLength] ?? 0) + kdfParams;
  if (version === CONTAINER_VERSION) return kdfEnd;
  // Version 2: the content type's length byte follows the key id (and scrypt parameters).
  if (prefix.length <= kdfEnd) return undefined;
  return kdfEnd + 1 + (prefix[kdfEnd] ?? 0);
}

/** Parses the header at the start of `bytes`; only the header's own bytes are needed. */
export function parseHeader(bytes: Uint8Array): { header: ContainerHeader; headerLength: number } {
  const headerLength = headerLengthFromPrefix(bytes);
  if (headerLength === undefined || bytes.length < headerLength) {
    throw invalid('header is incomplete', { available: bytes.length, ...(headerLength ? { headerLength } : {}) });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, headerLength);
  const version = bytes[OFFSET.version] === DOCUMENT_CONTAINER_VERSION ? DOCUMENT_CONTAINER_VERSION : CONTAINER_VERSION;
  const sampleFormatByte = bytes[OFFSET.sampleFormat];
  const formatOk = version === DOCUMENT_CONTAINER_VERSION ? sampleFormatByte === SAMPLE_FORMAT_NONE : sampleFormatByte === SAMPLE_FORMAT_PCM_S16LE || sampleFormatByte === SAMPLE_FORMAT_MP3;
  if (!formatOk) {
    throw invalid('unsupported sample format', { sampleFormat: sampleFormatByte });
  }
  const keyModeByte = bytes[OFFSET.keyMode];
  if (keyModeByte !== KEY_MODE_SERVER && keyModeByte !== KEY_MODE_CLIENT && keyModeByte !== KEY_MODE_CLIENT_PASSPHRASE) {
    throw invalid('unknown key mode', { keyMode: keyModeByte });
  }
  const keyIdEnd = OFFSET.keyId + (bytes[OFFSET.keyIdLength] ?? 0);
  let keyId: string;
  try {
    keyId = strictUtf8.decode(bytes.subarray(OFFSET.keyId, keyIdEnd));
  } catch (cause) {
    throw new CallvaultError(ErrorCode.ContainerInvalid, 'key id is not valid UTF-8', { cause });
  }
  const kdfEnd = keyIdEnd + (keyModeByte === KEY_MODE_CLIENT_PASSPHRASE ? SCRYPT_PARAMS_LENGTH : 0);
  let contentType: string | undefined;
  if (version === DOCUMENT_CONTAINER_VERSION) {
    // Printable ASCII is checked below; the decoder is only strict so that no byte is silently replaced.
    try {
      contentType = strictUtf8.decode(bytes.subarray(kdfEnd + 1, headerLength));
    } catch (cause) {
      throw new CallvaultError(ErrorCode.ContainerInvalid, 'content type is not ASCII', { cause });
    }
  }
  const header: ContainerHeader = {
    version,
    sampleFormat: sampleFormatByte === SAMPLE_FORMAT_NONE ? 'none' : sampleFormatByte === SAMPLE_FORMAT_MP3 ? 'mp3' : 'pcm_s16le',
    sampleRate: view.getUint32(OFFSET.sampleRate, false),
    channels: bytes[OFFSET.channels] as 0 | 1 | 2,
    keyMode: keyModeByte === KEY_MODE_SERVER ? 'server' : 'client',
    keyId,
    salt: bytes.slice(OFFSET.salt, OFFSET.salt + SALT_LENGTH),
    noncePrefix: bytes.slice(OFFSET.noncePrefix, OFFSET.noncePrefix + NONCE_PREFIX_LENGTH),
    segmentSize: view.getUint32(OFFSET.segmentSize, false),
    ...(keyModeByte === KEY_MODE_CLIENT_PASSPHRASE
      ? { scrypt: { log2N: bytes[keyIdEnd]!, r: view.getUint16(keyIdEnd + 1, false), p: view.getUint16(keyIdEnd + 3, false) } }
      : {}),
    ...(contentType === undefined ? {} : { contentType }),
  };
  validateHeaderFields(header);
  return { header, headerLength };
}

export function segmentNonce(noncePrefix: Uint8Array, segmentIndex: number, final: boolean): Uint8Array {
  if (!Number.isInteger(segmentIndex) || segmentIndex < 0 || segmentIndex >= MAX_SEGMENTS) {
    throw invalid('segment index is outside the 32-bit counter', { segmentIndex });
  }
  const nonce = new Uint8Array(NONCE_LENGTH);
  nonce.set(noncePrefix, 0);
  new DataView(nonce.buffer).setUint32(NONCE_PREFIX_LENGTH, segmentIndex, false);
  nonce[NONCE_LENGTH - 1] = final ? FLAG_FINAL : FLAG_NOT_FINAL;
  return nonce;
}

export function assertDataKey(dataKey: Uint8Array): void {
  if (!(dataKey instanceof Uint8Array) || dataKey.length !== DATA_KEY_LENGTH) {
    throw new CallvaultError(ErrorCode.BadRequest, `data key must be ${DATA_KEY_LENGTH} bytes`);
  }
}

/** Returns ciphertext || tag. */
export function sealSegment(
  dataKey: Uint8Array,
  headerBytes: Uint8Array,
  noncePrefix: Uint8Array,
  segmentIndex: number,
  final: boolean,
  plaintext: Uint8Array,
): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', dataKey, segmentNonce(noncePrefix, segmentIndex, final), {
    authTagLength: TAG_LENGTH,
  });
  cipher.setAAD(headerBytes);
  const out = new Uint8Array(plaintext.length + TAG_LENGTH);
  const body = cipher.update(plaintext);
  const rest = cipher.final();
  out.set(body, 0);
  out.set(rest, body.length);
  out.set(cipher.getAuthTag(), plaintext.length);
  return out;
}

/** Returns the plaintext, or `undefined` when the segment does not authenticate at this index and flag. */
export function openSegment(
  dataKey: Uint8Array,
  headerBytes: Uint8Array,
  noncePrefix: Uint8Array,
  segmentIndex: number,
  final: boolean,
  sealed: Uint8Array,
): Uint8Array | undefined {
  if (sealed.length < TAG_LENGTH) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', dataKey, segmentNonce(noncePrefix, segmentIndex, final), {
    authTagLength: TAG_LENGTH,
  });
  decipher.setAAD(headerBytes);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  const body = decipher.update(sealed.subarray(0, sealed.length - TAG_LENGTH));
  try {
    const rest = decipher.final();
    if (rest.length === 0) return new Uint8Array(body.buffer, body.byteOffset, body.length);
    const out = new Uint8Array(body.length + rest.length);
    out.set(body, 0);
    out.set(rest, body.length);
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Everything needed to continue a recording. Plain data only: it crosses into and out of worker threads
 * by structured clone on every batch, so no class instances, functions or cipher objects.
 */
export interface EncryptorState {
  formatVersion: 1;
  dataKey: Uint8Array;
  header: Uint8Array;
  noncePrefix: Uint8Array;
  segmentSize: number;
  /** Index of the next segment to seal. */
  nextSegment: number;
  /** Plaintext waiting for its segment to fill; always shorter than segmentSize. */
  pending: Uint8Array;
  finished: boolean;
}

export interface CreateEncryptorParams {
  dataKey: Uint8Array;
  keyMode: KeyMode;
  keyId: string;
  salt: Uint8Array;
  sampleRate: number;
  channels: 0 | 1 | 2;
  /** pcm_s16le unless told otherwise. */
  sampleFormat?: SampleFormat;
  segmentSize?: number;
  /** Client mode, passphrase client key: the scrypt parameters the data key was derived with. */
  scrypt?: ScryptParams;
  /**
   * Not audio: a version 2 object holding bytes of this media type (sample format, channels and sample rate
   * are written as 0, whatever is passed).
   */
  contentType?: string;
}

/**
 * Like createEncryptor but with a caller-chosen nonce prefix. Only for reproducible test vectors:
 * a repeated prefix under the same data key would repeat nonces.
 */
export function createEncryptorWithNoncePrefix(
  p: CreateEncryptorParams,
  noncePrefix: Uint8Array,
): { header: Uint8Array; state: EncryptorState } {
  assertDataKey(p.dataKey);
  const segmentSize = p.segmentSize ?? DEFAULT_SEGMENT_SIZE;
  const document = p.contentType !== undefined;
  const header = serializeHeader({
    version: document ? DOCUMENT_CONTAINER_VERSION : CONTAINER_VERSION,
    sampleFormat: document ? 'none' : (p.sampleFormat ?? 'pcm_s16le'),
    sampleRate: document ? 0 : p.sampleRate,
    channels: document ? 0 : p.channels,
    ...(document ? { contentType: p.contentType } : {}),
    keyMode: p.keyMode,
    keyId: p.keyId,
    salt: p.salt,
    noncePrefix,
    segmentSize,
    ...(p.scrypt ? { scrypt: p.scrypt } : {}),
  });
  const state: EncryptorState = {
    formatVersion: CONTAINER_VERSION,
    dataKey: Uint8Array.from(p.dataKey),
    header,
    noncePrefix: Uint8Array.from(noncePrefix),
    segmentSize,
    nextSegment: 0,
    pending: new Uint8Array(0),
    finished: false,
  };
  return { header: Uint8Array.from(header), state };
}

export function createEncryptor(p: CreateEncryptorParams): { header: Uint8Array; state: EncryptorState } {
  return createEncryptorWithNoncePrefix(p, randomBytes(NONCE_PREFIX_LENGTH));
}

/**
 * Seals every segment this chunk completes (and, when `final`, the last segment, which may be empty).
 * Pure: the given state is not modified. Full segments are sealed as soon as they fill, so the output
 * depends only on the concatenated plaintext, never on how it was split into chunks.
 */
export function encryptChunk(
  state: EncryptorState,
  plaintext: Uint8Array,
  final: boolean,
): { state: EncryptorState; output: Uint8Array } {
  if (state.finished) {
    throw new CallvaultError(ErrorCode.Closed, 'recording encryptor already sealed its final segment');
  }
  const { segmentSize } = state;
  const available = state.pending.length + plaintext.length;
  const fullSegments = Math.floor(available / segmentSize);
  const sealedSegments = fullSegments + (final ? 1 : 0);
  if (state.nextSegment + sealedSegments > MAX_SEGMENTS) {
    throw invalid('recording exceeds the maximum number of segments', { maxSegments: MAX_SEGMENTS });
  }

  const output = new Uint8Array(fullSegments * (segmentSize + TAG_LENGTH) + (final ? available - fullSegments * segmentSize + TAG_LENGTH : 0));
  let written = 0;
  let consumed = 0; // bytes of (pending ++ plaintext) already sealed
  let nextSegment = state.nextSegment;
  const segment = new Uint8Array(segmentSize);
  const take = (into: Uint8Array, length: number): Uint8Array => {
    // Fill from pending first, then plaintext, without concatenating the whole chunk.
    let filled = 0;
    while (filled < length) {
      const position = consumed + filled;
      if (position < state.pending.length) {
        const n = Math.min(length - filled, state.pending.length - position);
        into.set(state.pending.subarray(position, position + n), filled);
        filled += n;
      } else {
        const from = position - state.pending.length;
        const n = length - filled;
        into.set(plaintext.subarray(from, from + n), filled);
        filled += n;
      }
    }
    consumed += length;
    return into.subarray(0, length);
  };

  for (let i = 0; i < fullSegments; i++) {
    const sealed = sealSegment(state.dataKey, state.header, state.noncePrefix, nextSegment, false, take(segment, segmentSize));
    output.set(sealed, written);
    written += sealed.length;
    nextSegment++;
  }
  const remainder = take(new Uint8Array(available - consumed), available - consumed);
  if (final) {
    const sealed = sealSegment(state.dataKey, state.header, state.noncePrefix, nextSegment, true, remainder);
    output.set(sealed, written);
    written += sealed.length;
    nextSegment++;
  }
  return {
    state: {
      ...state,
      nextSegment,
      pending: final ? new Uint8Array(0) : remainder,
      finished: final,
    },
    output,
  };
}

/**
 * A whole version 2 object (header and every segment) holding `plaintext` of `contentType`: how callvault
 * stores a call's transcript, events and metadata. In memory, as those documents are small.
 */
export function sealDocument(p: Omit<CreateEncryptorParams, 'sampleRate' | 'channels' | 'sampleFormat' | 'contentType'> & { contentType: string }, plaintext: Uint8Array): Uint8Array {
  const { header, state } = createEncryptor({ ...p, sampleRate: 0, channels: 0 });
  const { output } = encryptChunk(state, plaintext, true);
  const object = new Uint8Array(header.length + output.length);
  object.set(header, 0);
  object.set(output, header.length);
  return object;
}
