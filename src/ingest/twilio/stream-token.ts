/**
 * Stream tokens: a Twilio stream URL the gateway signed for one call. Twilio signs only the URL of a media
 * stream's upgrade, so a captured `X-Twilio-Signature` opens any number of streams, for any CallSid. A token
 * in the URL (`?token=…`) binds the stream to one CallSid and an expiry: a captured upgrade then opens streams
 * of that call only, until the token expires. Organisations listed in TWILIO_STREAM_TOKEN_REQUIRED must use them.
 *
 *   token = "v1." + CallSid + "." + exp (unix seconds) + "." + base64url(HMAC-SHA256(K, "v1." + CallSid + "." + exp))
 *   K     = HKDF-SHA256(master key, salt = empty, info = "callvault/twilio-stream-token", 32 bytes)
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { CallvaultError, ErrorCode } from '../../errors/index.js';

export const STREAM_TOKEN_KEY_INFO = 'callvault/twilio-stream-token';
export const STREAM_TOKEN_PARAMETER = 'token';
/** What `twilioStreamUrl` signs for when no expiry is given: an hour, ample for a call to begin streaming. */
export const DEFAULT_STREAM_TOKEN_TTL_MS = 3600_000;
const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const TOKEN = /^v1\.(CA[0-9a-fA-F]{32})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/;

function tokenKey(masterKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), STREAM_TOKEN_KEY_INFO, 32));
}

function mac(masterKey: Uint8Array, payload: string): Buffer {
  return createHmac('sha256', tokenKey(masterKey)).update(payload).digest();
}

/** A token for streams of `callSid` that the gateway accepts until `expiresAtMs`. */
export function signStreamToken(masterKey: Uint8Array, callSid: string, expiresAtMs: number): string {
  if (!CALL_SID.test(callSid)) throw new CallvaultError(ErrorCode.BadRequest, 'expected a CA… call SID');
  const payload = `v1.${callSid}.${Math.floor(expiresAtMs / 1000)}`;
  return `${payload}.${mac(masterKey, payload).toString('base64url')}`;
}

/**
 * The `<Stream url>` for one call: the gateway's public URL (http(s) → ws(s)) + `/twilio/media?token=…`.
 * Put it in the TwiML answering that call's webhook, which names the CallSid.
 */
export function twilioStreamUrl(
  publicUrl: string,
  callSid: string,
  signing: { masterKey: Uint8Array; expiresAtMs?: number; now?: () => number },
): string {
  const url = new URL('/twilio/media', publicUrl);
  const prefix = new URL(publicUrl).pathname.replace(/\/+$/, '');
  url.pathname = `${prefix}/twilio/media`;
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  const expiresAtMs = signing.expiresAtMs ?? (signing.now ?? Date.now)() + DEFAULT_STREAM_TOKEN_TTL_MS;
  url.search = `${STREAM_TOKEN_PARAMETER}=${signStreamToken(signing.masterKey, callSid, expiresAtMs)}`;
  return url.toString();
}

/**
 * The CallSid a token was issued for, checked against every master key of the keyring (tokens signed before a
 * rotation stay valid until they expire). STREAM_TOKEN_INVALID when it is malformed, signed by no key, expired,
 * or expires later than `maxLifetimeMs` from now.
 */
export function verifyStreamToken(
  token: string,
  masterKeys: Iterable<Uint8Array>,
  nowMs: number,
  maxLifetimeMs: number,
): { callSid: string; expiresAtMs: number } {
  const match = TOKEN.exec(token);
  if (!match) throw new CallvaultError(ErrorCode.StreamTokenInvalid, 'the stream token is malformed');
  const [, callSid = '', exp = '', sig = ''] = match;
  // Compared as text: the 43rd character of a 32-byte base64url value carries two spare bits, so comparing the
  // decoded bytes would accept several spellings of one signature.
  const given = Buffer.from(sig, 'ascii');
  let valid = false;
  for (const key of masterKeys) {
    const expected = Buffer.from(mac(key, `v1.${callSid}.${exp}`).toString('base64url'), 'ascii');
    if (given.length === expected.length && timingSafeEqual(given, expected)) valid = true;
  }
  if (!valid) throw new CallvaultError(ErrorCode.StreamTokenInvalid, 'the stream token is not signed by this gateway');
  const expiresAtMs = Number(exp) * 1000;
  if (expiresAtMs <= nowMs) throw new CallvaultError(ErrorCode.StreamTokenInvalid, 'the stream token has expired');
  if (expiresAtMs > nowMs + maxLifetimeMs) {
    throw new CallvaultError(ErrorCode.StreamTokenInvalid, 'the stream token expires later than the gateway allows', {
      details: { maxLifetimeSeconds: Math.floor(maxLifetimeMs / 1000) },
    });
  }
  return { callSid, expiresAtMs };
}
