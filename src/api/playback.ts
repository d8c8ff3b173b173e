/**
 * Signed playback URLs: `<audio>` (and any player) cannot send a Bearer header, so
 * `POST /calls/:callId/playback-url` (Bearer, scope `read`) issues a short-lived URL scoped to ONE recording and
 * one track, and `GET|HEAD /playback/:recordingId?org=…&track=…&exp=…&sig=…` serves it without any header:
 * the same WAV (or MP3) as `GET /calls/{callId}/recording`, with Range and HEAD.
 *
 *   sig = base64url(HMAC-SHA256(K, "v1\n" + org + "\n" + recordingId + "\n" + track + "\n" + exp))
 *   K   = HKDF-SHA256(master key, salt = empty, info = "callvault/playback-url", 32 bytes)
 *
 * The master keyring signs it like the LiveKit egress URLs and Twilio stream tokens (a key of its own derived
 * per purpose, so no signature is valid for another one); a URL signed before a rotation stays valid until
 * it expires. Lifetime: PLAYBACK_URL_TTL_SECONDS (default 600, 30 to 3600). A missing, malformed or tampered
 * signature is 403 PLAYBACK_URL_INVALID, an expired one 403 PLAYBACK_URL_EXPIRED. Client-key recordings get
 * no playback URL (409): the gateway cannot decrypt them, only their owner can, after downloading them.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Recording as RecordingRow } from '../db/index.js';
import type { GatewayPort } from '../gateway/port.js';
import { authenticate } from '../http/auth.js';
import { json, type RequestContext, type Router } from '../http/http.js';
import { apiStatus, jsonBody } from './manage/common.js';
import type { RecordingMedia } from './recordings.js';
import { addPlaybackPaths } from './playback-openapi.js';

export const CALL_PLAYBACK_URL_PATH = '/calls/:callId/playback-url';
export const PLAYBACK_PATH = '/playback/:recordingId';
export const PLAYBACK_URL_KEY_INFO = 'callvault/playback-url';
/** PLAYBACK_URL_TTL_SECONDS' default. */
export const DEFAULT_PLAYBACK_URL_TTL_SECONDS = 600;
export const PLAYBACK_TRACKS = ['stereo', 'caller', 'bot'] as const;
export type PlaybackTrack = (typeof PLAYBACK_TRACKS)[number];

export const PlaybackUrlRequestSchema = z.strictObject({
  track: z
    .enum(PLAYBACK_TRACKS)
    .default('stereo')
    .describe('`stereo`: the recording as stored (both channels, or the one mixed channel of a mono recording); `caller` / `bot`: one track of a stereo recording as a mono WAV.'),
});

const PlaybackQuerySchema = z.object({
  org: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/),
  track: z.enum(PLAYBACK_TRACKS),
  exp: z.string().regex(/^\d{1,12}$/).transform(Number),
  sig: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});

export interface PlaybackTarget {
  org: string;
  recordingId: string;
  track: PlaybackTrack;
}

function playbackKey(masterKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), PLAYBACK_URL_KEY_INFO, 32));
}

function mac(masterKey: Uint8Array, target: PlaybackTarget, exp: number): Buffer {
  return createHmac('sha256', playbackKey(masterKey)).update(`v1\n${target.org}\n${target.recordingId}\n${target.track}\n${exp}`).digest();
}

/** The path and query of a playback URL (relative to the gateway's base URL), valid until `expiresAtMs`. */
export function signPlaybackPath(masterKey: Uint8Array, target: PlaybackTarget, expiresAtMs: number): string {
  const exp = Math.floor(expiresAtMs / 1000);
  const query = new URLSearchParams({ org: target.org, track: target.track, exp: String(exp), sig: mac(masterKey, target, exp).toString('base64url') });
  return `/playback/${encodeURIComponent(target.recordingId)}?${query.toString()}`;
}

/**
 * Checks a playback URL's query against every master key of the keyring. PLAYBACK_URL_INVALID when it is
 * malformed, signed by no key or expires later than `maxLifetimeMs` from now; PLAYBACK_URL_EXPIRED once past `exp`.
 */
export function verifyPlaybackQuery(
  recordingId: string,
  query: URLSearchParams,
  masterKeys: Iterable<Uint8Array>,
  nowMs: number,
  maxLifetimeMs: number,
): PlaybackTarget & { expiresAtMs: number } {
  const parsed = PlaybackQuerySchema.safeParse(Object.fromEntries(query));
  if (!parsed.success) throw new CallvaultError(ErrorCode.PlaybackUrlInvalid, 'the playback URL is not a signed playback URL');
  const { org, track, exp, sig } = parsed.data;
  const target: PlaybackTarget = { org, recordingId, track };
  // Compared as text: the 43rd character of a 32-byte base64url value carries two spare bits, so comparing the
  // decoded bytes would accept several spellings of one signature.
  const given = Buffer.from(sig, 'ascii');
  let valid = false;
  for (const key of masterKeys) {
    const expected = Buffer.from(mac(key, target, exp).toString('base64url'), 'ascii');
    if (given.length === expected.length && timingSafeEqual(given, expected)) valid = true;
  }
  if (!valid) throw new CallvaultError(ErrorCode.PlaybackUrlInvalid, 'the playback URL signature does not match');
  const expiresAtMs = exp * 1000;
  if (expiresAtMs <= nowMs) {
    throw new CallvaultError(ErrorCode.PlaybackUrlExpired, 'the playback URL has expired', { details: { expiredAt: new Date(expiresAtMs).toISOString() } });
  }
  // Signed here, but for longer than the gateway now allows (PLAYBACK_URL_TTL_SECONDS was lowered): refused.
  if (expiresAtMs > nowMs + maxLifetimeMs) {
    throw new CallvaultError(ErrorCode.PlaybackUrlInvalid, 'the playback URL expires later than the gateway allows', {
      details: { maxLifetimeSeconds: Math.floor(maxLifetimeMs / 1000) },
    });
  }
  return { ...target, expiresAtMs };
}

function notFound(): CallvaultError {
  return new CallvaultError(ErrorCode.NotFound, 'no recording for this call');
}

function servable(row: RecordingRow): boolean {
  return row.status === 'completed' || row.status === 'uploading';
}

export function registerPlaybackRoutes(router: Router, gateway: GatewayPort, media: RecordingMedia): void {
  const { db } = gateway;
  const ttlSeconds = gateway.options.playbackUrlTtlSeconds ?? DEFAULT_PLAYBACK_URL_TTL_SECONDS;
  addPlaybackPaths({ request: PlaybackUrlRequestSchema, ttlSeconds });

  router.route('post', CALL_PLAYBACK_URL_PATH, 'call_playback_url', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const body = await jsonBody(ctx, PlaybackUrlRequestSchema);
    const callId = ctx.params[0] ?? '';
    // The recording GET /calls/{callId}/recording serves: the call's first stream's, completed (or uploading).
    const rows = (
      await db.recordings.list(principal.orgId, { callSid: callId, page: 0, limit: 1000, ...(principal.userId === null ? {} : { userId: principal.userId }) })
    ).rows.filter((r) => r.metadata['primary'] !== false);
    if (rows.length === 0) throw notFound();
    const row = rows.find((r) => r.status === 'completed') ?? rows.find((r) => r.status === 'uploading');
    if (!row) {
      throw new CallvaultError(ErrorCode.Conflict, `the call's recording is ${apiStatus(rows[0]!.status)}`, { details: { status: apiStatus(rows[0]!.status) } });
    }
    if (row.keyMode === 'client') {
      throw new CallvaultError(ErrorCode.Conflict, 'a client-key recording cannot be played from a URL: the gateway cannot decrypt it; download it and decrypt it with the key', {
        details: { keyMode: 'client' },
      });
    }
    if (body.track !== 'stereo' && (row.channels !== 2 || row.format === 'mp3')) {
      throw new CallvaultError(ErrorCode.TracksNotSeparate, 'the recording mixed its tracks into one channel; they were not kept apart', {
        details: { channels: row.channels, format: row.format },
      });
    }
    const expiresAtMs = gateway.now() + ttlSeconds * 1000;
    const path = signPlaybackPath(gateway.options.keyring.current, { org: principal.orgId, recordingId: row.id, track: body.track }, expiresAtMs);
    return json(
      201,
      {
        url: `${gateway.publicUrl.replace(/\/+$/, '')}${path}`,
        path,
        expires_at: new Date(Math.floor(expiresAtMs / 1000) * 1000).toISOString(),
        recording_sid: row.recordingSid,
        track: body.track,
        channels: body.track === 'stereo' ? row.channels : 1,
        sample_rate: row.sampleRate,
        duration_ms: row.durationMs,
        content_type: row.format === 'mp3' ? 'audio/mpeg' : 'audio/wav',
      },
      { 'cache-control': 'no-store' },
    );
  });

  const play = async (ctx: RequestContext) => {
    const recordingId = ctx.params[0] ?? '';
    const target = verifyPlaybackQuery(recordingId, ctx.query, gateway.options.keyring.all.values(), gateway.now(), ttlSeconds * 1000);
    const row = await db.recordings.get(target.org, target.recordingId);
    // Deleted since the URL was issued: gone, like any missing recording.
    if (!row) throw notFound();
    if (!servable(row)) throw new CallvaultError(ErrorCode.Conflict, `the recording is ${apiStatus(row.status)}`, { details: { status: apiStatus(row.status) } });
    if (row.keyMode === 'client') throw new CallvaultError(ErrorCode.Conflict, 'a client-key recording cannot be played from a URL', { details: { keyMode: 'client' } });
    return media.serveMedia(ctx, row, target.track === 'stereo' ? undefined : target.track);
  };

  router.route('get', PLAYBACK_PATH, 'playback_get', play);
  router.route('head', PLAYBACK_PATH, 'playback_head', play);
}
