import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import type { TrackRole } from '../../gateway/port.js';

export const LIVEKIT_EGRESS_PATH = '/livekit/egress';
export const EGRESS_URL_KEY_INFO = 'callvault/egress-url';
export const DEFAULT_EGRESS_SAMPLE_RATE = 48_000;
/** SIGNED_URL_MAX_LIFETIME_SECONDS' default: a signed URL may be valid for at most a day. */
export const DEFAULT_SIGNED_URL_MAX_LIFETIME_MS = 24 * 3600_000;
const SIGNED_FIELDS = ['room', 'roomSid', 'participant', 'track', 'role', 'rate', 'exp'] as const;

/** What a Track Egress WebSocket URL identifies: one track of one participant in one room. */
export interface EgressTarget {
  room: string;
  /** The room's SID, the call id of its recording; looked up from LiveKit when absent. */
  roomSid?: string;
  participant: string;
  track: string;
  /** Channel hint: the agent goes right in stereo recordings. Defaults to caller. */
  role?: TrackRole;
  /** PCM rate Track Egress sends; LiveKit sends the source rate, 48 kHz for Opus tracks. */
  sampleRate?: number;
}

export interface VerifiedEgressTarget extends Required<Omit<EgressTarget, 'roomSid'>> {
  roomSid?: string;
  expiresAt: number;
}

/** A key used only for egress URLs, so the master key itself never signs anything a client sees. */
function egressUrlKey(masterKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), EGRESS_URL_KEY_INFO, 32));
}

function canonical(params: URLSearchParams): string {
  return SIGNED_FIELDS.map((name) => `${name}=${encodeURIComponent(params.get(name) ?? '')}`).join('&');
}

function signature(masterKey: Uint8Array, params: URLSearchParams): Buffer {
  return createHmac('sha256', egressUrlKey(masterKey)).update(`${LIVEKIT_EGRESS_PATH}?${canonical(params)}`).digest();
}

/**
 * The WebSocket URL to give LiveKit's `TrackEgressRequest.websocketUrl`: the target's identity, an expiry
 * (`exp`, unix seconds) and `sig`, an HMAC-SHA256 keyed with HKDF(master key, info "callvault/egress-url")
 * over the path and the identity fields. `gatewayUrl` is the gateway's public base URL (http(s) or ws(s)).
 */
export function signEgressUrl(
  gatewayUrl: string,
  target: EgressTarget,
  signing: { masterKey: Uint8Array; expiresAtMs: number },
): string {
  const url = new URL(LIVEKIT_EGRESS_PATH, gatewayUrl);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  const params = new URLSearchParams();
  params.set('room', target.room);
  if (target.roomSid) params.set('roomSid', target.roomSid);
  params.set('participant', target.participant);
  params.set('track', target.track);
  params.set('role', target.role ?? 'caller');
  params.set('rate', String(target.sampleRate ?? DEFAULT_EGRESS_SAMPLE_RATE));
  params.set('exp', String(Math.floor(signing.expiresAtMs / 1000)));
  params.set('sig', signature(signing.masterKey, params).toString('base64url'));
  url.search = params.toString();
  return url.toString();
}

/**
 * Checks an egress URL's query against every master key in the keyring (so URLs signed before a rotation
 * stay valid until they expire). Throws SIGNATURE_INVALID for a missing, wrong or expired signature and
 * BAD_REQUEST for a signed URL whose fields make no sense.
 */
export function verifyEgressQuery(
  query: URLSearchParams,
  masterKeys: Iterable<Uint8Array>,
  nowMs: number,
  maxLifetimeMs: number = DEFAULT_SIGNED_URL_MAX_LIFETIME_MS,
): VerifiedEgressTarget {
  const sig = query.get('sig');
  if (!sig) throw new CallvaultError(ErrorCode.SignatureInvalid, 'egress URL is not signed');
  // Compared as text: the 43rd character of a 32-byte base64url value carries two spare bits, so comparing the
  // decoded bytes would accept several spellings of one signature.
  const given = Buffer.from(sig, 'ascii');
  let valid = false;
  for (const key of masterKeys) {
    const expected = Buffer.from(signature(key, query).toString('base64url'), 'ascii');
    if (given.length === expected.length && timingSafeEqual(given, expected)) valid = true;
  }
  if (!valid) throw new CallvaultError(ErrorCode.SignatureInvalid, 'egress URL signature does not match');
  const exp = Number(query.get('exp'));
  if (!Number.isFinite(exp) || exp * 1000 <= nowMs) {
    throw new CallvaultError(ErrorCode.SignatureInvalid, 'egress URL has expired', { details: { expiredAt: exp } });
  }
  // A URL valid "forever" (exp in 2100) is a standing credential: lifetimes are capped (SIGNED_URL_MAX_LIFETIME_SECONDS).
  if (exp * 1000 > nowMs + maxLifetimeMs) {
    throw new CallvaultError(ErrorCode.SignatureInvalid, 'egress URL expires later than the gateway allows', {
      details: { maxLifetimeSeconds: Math.floor(maxLifetimeMs / 1000) },
    });
  }
  const room = query.get('room') ?? '';
  const participant = query.get('participant') ?? '';
  const track = query.get('track') ?? '';
  const role = query.get('role') ?? 'caller';
  const sampleRate = Number(query.get('rate') ?? DEFAULT_EGRESS_SAMPLE_RATE);
  if (!room || !participant || !track || (role !== 'caller' && role !== 'agent') || !Number.isInteger(sampleRate) || sampleRate < 8000 || sampleRate > 96_000) {
    throw new CallvaultError(ErrorCode.BadRequest, 'egress URL fields are invalid');
  }
  const roomSid = query.get('roomSid') || undefined;
  return { room, participant, track, role, sampleRate, expiresAt: exp * 1000, ...(roomSid ? { roomSid } : {}) };
}
