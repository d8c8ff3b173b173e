/**
 * Data keys, master-key wrapping (server mode) and client-key derivation (client mode).
 * Key material is never logged, put in error messages, or stored by this module.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scrypt } from 'node:crypto';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { DATA_KEY_LENGTH, SALT_LENGTH, scryptMemoryBytes, type ContainerHeader, type ScryptParams } from './container.js';

export function generateDataKey(): Uint8Array {
  return new Uint8Array(randomBytes(DATA_KEY_LENGTH));
}

export function generateSalt(): Uint8Array {
  return new Uint8Array(randomBytes(SALT_LENGTH));
}

// ---------------------------------------------------------------------------------------------------------
// Server mode: the random per-recording data key is stored wrapped by a master key.

const WRAP_VERSION = 1;
const WRAP_NONCE_LENGTH = 12;
const WRAP_TAG_LENGTH = 16;
/** version(1) || nonce(12) || AES-256-GCM(dataKey)(32) || tag(16) */
export const WRAPPED_KEY_LENGTH = 1 + WRAP_NONCE_LENGTH + DATA_KEY_LENGTH + WRAP_TAG_LENGTH;

const utf8 = new TextEncoder();

function assertKey32(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== DATA_KEY_LENGTH) {
    throw new CallvaultError(ErrorCode.BadRequest, `${what} must be ${DATA_KEY_LENGTH} bytes`);
  }
}

/**
 * Seals a data key under a master key. The master key id is the AAD, so a wrapped key cannot be
 * presented as belonging to a different master key.
 */
export function wrapDataKey(masterKey: Uint8Array, masterKeyId: string, dataKey: Uint8Array): Uint8Array {
  assertKey32(masterKey, 'master key');
  assertKey32(dataKey, 'data key');
  if (masterKeyId.length === 0) throw new CallvaultError(ErrorCode.BadRequest, 'master key id must not be empty');
  const nonce = randomBytes(WRAP_NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', masterKey, nonce, { authTagLength: WRAP_TAG_LENGTH });
  cipher.setAAD(utf8.encode(masterKeyId));
  const sealed = Buffer.concat([cipher.update(dataKey), cipher.final()]);
  const out = new Uint8Array(WRAPPED_KEY_LENGTH);
  out[0] = WRAP_VERSION;
  out.set(nonce, 1);
  out.set(sealed, 1 + WRAP_NONCE_LENGTH);
  out.set(cipher.getAuthTag(), 1 + WRAP_NONCE_LENGTH + DATA_KEY_LENGTH);
  return out;
}

/**
 * Recovers a data key. The keyring maps master key ids to keys and holds the current key and every
 * previous one still protecting stored recordings, so rotation never strands old recordings.
 */
export function unwrapDataKey(keyring: ReadonlyMap<string, Uint8Array>, keyId: string, wrapped: Uint8Array): Uint8Array {
  const masterKey = keyring.get(keyId);
  if (masterKey === undefined) {
    throw new CallvaultError(ErrorCode.KeyUnknown, 'master key id is not in the keyring', { details: { keyId } });
  }
  assertKey32(masterKey, 'master key');
  const fail = (cause?: unknown) =>
    new CallvaultError(ErrorCode.KeyUnwrapFailed, 'wrapped data key failed authentication', {
      details: { keyId },
      ...(cause === undefined ? {} : { cause }),
    });
  if (wrapped.length !== WRAPPED_KEY_LENGTH || wrapped[0] !== WRAP_VERSION) throw fail();
  const nonce = wrapped.subarray(1, 1 + WRAP_NONCE_LENGTH);
  const sealed = wrapped.subarray(1 + WRAP_NONCE_LENGTH, 1 + WRAP_NONCE_LENGTH + DATA_KEY_LENGTH);
  const tag = wrapped.subarray(1 + WRAP_NONCE_LENGTH + DATA_KEY_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', masterKey, nonce, { authTagLength: WRAP_TAG_LENGTH });
  decipher.setAAD(utf8.encode(keyId));
  decipher.setAuthTag(tag);
  try {
    return new Uint8Array(Buffer.concat([decipher.update(sealed), decipher.final()]));
  } catch (cause) {
    throw fail(cause);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Client mode: the caller supplies key material; callvault derives the data key and forgets both.

/** HKDF `info` for client data keys; part of the format (docs/recording-format.md). */
export const CLIENT_DATA_KEY_INFO = 'callvault/v1/client-data-key';
export const MIN_CLIENT_KEY_BITS = 128;

const HEX_ALPHABET = '0123456789abcdef';
const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/**
 * A run of characters whose alphabet indices step by a constant (`aaaa`, `abcd`, `0246`), or of decoded
 * bytes doing the same, is rejected once a random key would show it with probability 2^-36 per position.
 */
const PATTERN_IMPROBABILITY_BITS = 36;

export type ClientKeyEncoding = 'hex' | 'base64' | 'base64url';

export interface ClientKeyAnalysis {
  encoding: ClientKeyEncoding | undefined;
  /** Decoded key material, when the string is a valid encoding. */
  bytes: Uint8Array | undefined;
  bits: number;
  /** Why the key scores 0 bits or falls short; never contains the key. */
  weakness: string | undefined;
}

function decodeClientKey(key: string): { encoding: ClientKeyEncoding; bytes: Uint8Array; indices: number[]; alphabetSize: number } | string {
  if (key.length > 0 && key.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(key)) {
    const lower = key.toLowerCase();
    return {
      encoding: 'hex',
      bytes: new Uint8Array(Buffer.from(lower, 'hex')),
      indices: Array.from(lower, (c) => HEX_ALPHABET.indexOf(c)),
      alphabetSize: 16,
    };
  }
  const match = /^([A-Za-z0-9+/_-]+)(={0,2})$/.exec(key);
  if (!match) return 'it is neither hex nor base64/base64url';
  const [, body = '', padding = ''] = match;
  const standard = /[+/]/.test(body);
  const url = /[-_]/.test(body);
  if (standard && url) return 'it mixes base64 and base64url alphabets';
  if (body.length % 4 === 1) return 'its base64 length is impossible';
  if (padding.length > 0 && (body.length + padding.length) % 4 !== 0) return 'its base64 padding is wrong';
  const encoding: ClientKeyEncoding = url ? 'base64url' : 'base64';
  const bytes = Buffer.from(body, encoding);
  // Non-canonical encodings (stray low bits in the last character) are not what an encoder emits for key material.
  if (bytes.toString(encoding).replace(/=+$/, '') !== body) return 'its base64 is not canonical';
  const normalised = body.replace(/-/g, '+').replace(/_/g, '/');
  return {
    encoding,
    bytes: new Uint8Array(bytes),
    indices: Array.from(normalised, (c) => BASE64_ALPHABET.indexOf(c)),
    alphabetSize: 64,
  };
}

/** Length of the longest run of values stepping by a constant (0 included), if it is improbably long. */
function steppingRun(values: ArrayLike<number>, alphabetSize: number): number | undefined {
  const patternRun = 2 + Math.ceil(PATTERN_IMPROBABILITY_BITS / Math.log2(alphabetSize));
  let run = Math.min(values.length, 2);
  for (let i = 2; i < values.length; i++) {
    run = values[i]! - values[i - 1]! === values[i - 1]! - values[i - 2]! ? run + 1 : 2;
    if (run >= patternRun) return run;
  }
  return undefined;
}

/** Why the key does not look like random material over its alphabet, or undefined if it does. */
function nonRandomness(indices: number[], alphabetSize: number, bytes: Uint8Array): string | undefined {
  const n = indices.length;
  const expectedDistinct = alphabetSize * (1 - (1 - 1 / alphabetSize) ** n);
  const distinct = new Set(indices).size;
  if (distinct < expectedDistinct / 2) {
    return `it uses ${distinct} distinct characters where random key material would show about ${Math.round(expectedDistinct)}`;
  }
  const charRun = steppingRun(indices, alphabetSize);
  if (charRun !== undefined) return `it contains a run of ${charRun} repeated or evenly stepping characters`;
  // Counting byte sequences (00 01 02 ...) hide from the character checks, so look at the bytes too.
  const byteRun = steppingRun(bytes, 256);
  if (byteRun !== undefined) return `its bytes contain a run of ${byteRun} repeated or evenly stepping values`;
  for (let period = 1; period <= n / 2; period++) {
    let repeats = true;
    for (let i = period; i < n && repeats; i++) repeats = indices[i] === indices[i - period];
    if (repeats) return 'it repeats a shorter pattern';
  }
  return undefined;
}

export function analyzeClientKey(key: string): ClientKeyAnalysis {
  const decoded = decodeClientKey(key);
  if (typeof decoded === 'string') return { encoding: undefined, bytes: undefined, bits: 0, weakness: decoded };
  const weakness = nonRandomness(decoded.indices, decoded.alphabetSize, decoded.bytes);
  const bits = weakness === undefined ? 8 * decoded.bytes.length : 0;
  return {
    encoding: decoded.encoding,
    bytes: decoded.bytes,
    bits,
    weakness: weakness ?? (bits < MIN_CLIENT_KEY_BITS ? `it decodes to only ${decoded.bytes.length} bytes` : undefined),
  };
}

/**
 * Estimated entropy of a client key: 8 bits per decoded byte, or 0 when the string is not hex/base64
 * key material or does not look random. See docs/recording-format.md, "Client keys".
 */
export function estimateClientKeyBits(key: string): number {
  return analyzeClientKey(key).bits;
}

/** Shortest client key accepted, in characters (Unicode code points). */
export const MIN_CLIENT_KEY_CHARS = 8;

/**
 * How a client key is turned into a data key: `key` (hex or base64 of at least 16 bytes that look random:
 * HKDF, key mode `02`) or `passphrase` (any other string: scrypt, key mode `03`). See docs/recording-format.md.
 */
export type ClientKeyKind = 'key' | 'passphrase';

export function clientKeyKind(key: string): ClientKeyKind {
  return analyzeClientKey(key).bits >= MIN_CLIENT_KEY_BITS ? 'key' : 'passphrase';
}

/** Refuses (CLIENT_KEY_WEAK) a client key shorter than MIN_CLIENT_KEY_CHARS; any longer string is accepted. */
export function assertClientKeyStrong(key: string): void {
  const length = typeof key === 'string' ? Array.from(key).length : 0;
  if (length < MIN_CLIENT_KEY_CHARS) {
    throw new CallvaultError(
      ErrorCode.ClientKeyWeak,
      `client key rejected: shorter than ${MIN_CLIENT_KEY_CHARS} characters; use a passphrase of at least ${MIN_CLIENT_KEY_CHARS} characters, or hex or base64 of at least ${MIN_CLIENT_KEY_BITS / 8} random bytes`,
      { details: { minLength: MIN_CLIENT_KEY_CHARS } },
    );
  }
}

/** What callvault writes for passphrase client keys: N = 2^15, r = 8, p = 1 (32 MiB, memory-hard). */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({ log2N: 15, r: 8, p: 1 });

/**
 * scrypt(passphrase as UTF-8, salt = the recording's salt, N, r, p, 32 bytes): the data key of a passphrase
 * client key. Runs on libuv's thread pool (the callback API), never on the calling thread: at the default
 * parameters it takes tens of milliseconds.
 */
export function derivePassphraseDataKey(passphrase: string, salt: Uint8Array, params: ScryptParams): Promise<Uint8Array> {
  assertClientKeyStrong(passphrase);
  if (salt.length !== SALT_LENGTH) throw new CallvaultError(ErrorCode.BadRequest, `salt must be ${SALT_LENGTH} bytes`);
  const memory = scryptMemoryBytes(params);
  return new Promise((resolve, reject) => {
    scrypt(utf8.encode(passphrase), salt, DATA_KEY_LENGTH, { N: 2 ** params.log2N, r: params.r, p: params.p, maxmem: 2 * memory + 1024 * 1024 }, (err, derived) => {
      if (err) reject(new CallvaultError(ErrorCode.BadRequest, 'scrypt failed for these parameters', { cause: err, details: { ...params } }));
      else resolve(new Uint8Array(derived));
    });
  });
}

/**
 * The data key of a new client-key recording with this salt: HKDF for a key (no scrypt parameters),
 * scrypt for a passphrase (its parameters go into the header).
 */
export async function deriveNewClientDataKey(clientKey: string, salt: Uint8Array): Promise<{ dataKey: Uint8Array; scrypt?: ScryptParams }> {
  assertClientKeyStrong(clientKey);
  if (clientKeyKind(clientKey) === 'key') return { dataKey: deriveClientDataKey(clientKey, salt) };
  const params = { ...DEFAULT_SCRYPT_PARAMS };
  return { dataKey: await derivePassphraseDataKey(clientKey, salt, params), scrypt: params };
}

/** The data key of an existing client-mode recording, as its header says it was derived (HKDF or scrypt). */
export function deriveClientDataKeyFor(clientKey: string, header: Pick<ContainerHeader, 'salt' | 'scrypt'>): Promise<Uint8Array> {
  if (header.scrypt) return derivePassphraseDataKey(clientKey, header.salt, header.scrypt);
  return Promise.resolve(deriveClientDataKey(clientKey, header.salt));
}

/** HKDF-SHA256(ikm = decoded client key, salt = the recording's salt, info = CLIENT_DATA_KEY_INFO). */
export function deriveClientDataKey(clientKey: string, salt: Uint8Array): Uint8Array {
  if (clientKeyKind(clientKey) !== 'key') {
    throw new CallvaultError(ErrorCode.ClientKeyWeak, 'this client key is a passphrase, not hex or base64 of 16 random bytes: its data key is derived with scrypt');
  }
  if (salt.length !== SALT_LENGTH) throw new CallvaultError(ErrorCode.BadRequest, `salt must be ${SALT_LENGTH} bytes`);
  const ikm = analyzeClientKey(clientKey).bytes!;
  return new Uint8Array(hkdfSync('sha256', ikm, salt, utf8.encode(CLIENT_DATA_KEY_INFO), DATA_KEY_LENGTH));
}
