/**
 * `GET|HEAD|DELETE /calls/:callId/recording`: a call's recording, as a WAV decrypted on the fly (server
 * key mode), as a redirect to the encrypted object (client key mode), or deleted everywhere.
 */
import type { Readable } from 'node:stream';
import { forwardToOwner } from './forward.js';
import { CallvaultError, ErrorCode, isCallvaultError, toCallvaultError } from '../errors/index.js';
import { MAX_HEADER_LENGTH, parseHeader } from '../crypto/index.js';
import type { Recording as RecordingRow } from '../db/index.js';
import type { GatewayPort } from '../gateway/port.js';
import { authenticate, type Principal } from '../http/auth.js';
import { json, streamed, type HttpResult, type RequestContext, type Router, type StreamedResult } from '../http/http.js';
import { apiStatus } from './manage/common.js';
import {
  BackpressuredBody,
  ClientGone,
  completedLayout,
  decryptPlannedPcm,
  deinterleaveChannel,
  liveLayout,
  planMedia,
  planTrack,
  readAll,
  TRACK_CHANNEL,
  type ContainerPrefix,
  type MediaPlan,
  type SegmentLayout,
  type TrackName,
  type TrackPlan,
} from './wav-stream.js';

export const CALL_RECORDING_PATH = '/calls/:callId/recording';
/** The issue caps presigned URLs at five minutes whatever the configuration says. */
export const MAX_PRESIGNED_URL_TTL_SECONDS = 300;
const HEADER_CACHE_LIMIT = 1024;

function notFound(): CallvaultError {
  // Deliberately the same for "no such call", "no recording" and "another organisation's call".
  return new CallvaultError(ErrorCode.NotFound, 'no recording for this call');
}

/** Immutable once complete, so a seeking client (many Range requests) needs S3 for the header only once. */
class HeaderCache {
  readonly #entries = new Map<string, ContainerPrefix>();
  get(key: string): ContainerPrefix | undefined {
    const hit = this.#entries.get(key);
    if (hit) {
      this.#entries.delete(key);
      this.#entries.set(key, hit);
    }
    return hit;
  }
  set(key: string, value: ContainerPrefix): void {
    this.#entries.set(key, value);
    if (this.#entries.size > HEADER_CACHE_LIMIT) this.#entries.delete(this.#entries.keys().next().value!);
  }
  delete(key: string): void {
    this.#entries.delete(key);
  }
}

function prefixFrom(bytes: Uint8Array): ContainerPrefix {
  const { header, headerLength } = parseHeader(bytes);
  return { header, headerLength, headerBytes: bytes.slice(0, headerLength) };
}

/** Where a recording's ciphertext is read from: the S3 object, or the live spool file. */
interface CiphertextSource {
  layout: SegmentLayout;
  open(start: number, endInclusive: number, signal: AbortSignal): Promise<Readable>;
  release(): Promise<void>;
}

/** What other routes may reuse: serving a recording row's media, and removing a recording everywhere. */
export interface RecordingMedia {
  serveMedia(ctx: RequestContext, row: RecordingRow, track?: TrackName): Promise<HttpResult | StreamedResult>;
  remove(orgId: string, row: RecordingRow): Promise<void>;
  /**
   * The whole decrypted PCM of a completed (or uploading) server-key PCM recording, segment by segment, for
   * analysis on read (the energy-based VAD of call_metadata.json). Null for client-key and MP3 recordings.
   */
  readPcm(row: RecordingRow, signal: AbortSignal): Promise<{ channels: number; sampleRate: number; plaintextSize: number; pcm: AsyncIterable<Uint8Array> } | null>;
}

export function registerRecordingRoutes(router: Router, gateway: GatewayPort): RecordingMedia {
  const { db, objects } = gateway;
  const headers = new HeaderCache();

  // A user-bound key sees only the recordings of calls tagged with its user: another user's call is not there.
  const recordingsOfCall = async ({ orgId, userId }: Principal, callId: string): Promise<RecordingRow[]> =>
    (await db.recordings.list(orgId, { callSid: callId, page: 0, limit: 1000, ...(userId === null ? {} : { userId }) })).rows;

  const objectSource = async (row: RecordingRow, signal: AbortSignal): Promise<CiphertextSource> => {
    const objectSize = await objects.objectSize(row, signal);
    const open = (start: number, endInclusive: number, abortSignal: AbortSignal): Promise<Readable> => objects.openObjectRange(row, start, endInclusive, abortSignal);
    let prefix = headers.get(row.objectKey);
    if (!prefix) {
      prefix = prefixFrom(await readAll(await open(0, Math.min(MAX_HEADER_LENGTH, objectSize) - 1, signal)));
      headers.set(row.objectKey, prefix);
    }
    return { layout: completedLayout(prefix, objectSize), open, release: async () => undefined };
  };

  /** Null when this gateway holds no spool file for the recording (finished meanwhile, or another instance). */
  const spoolSource = async (row: RecordingRow): Promise<CiphertextSource | null> => {
    // One handle for the whole response: the spool file is removed once the upload completes.
    const file = await objects.openSpoolFile(row);
    if (!file) return null;
    try {
      const { size } = await file.stat();
      const head = Buffer.alloc(Math.min(MAX_HEADER_LENGTH, size));
      await file.read(head, 0, head.length, 0);
      // An uploading recording's spool is sealed and whole; a live one ends in a segment still being written.
      const layout = row.status === 'uploading' ? completedLayout(prefixFrom(head), size) : liveLayout(prefixFrom(head), size);
      let released = false;
      const release = async () => {
        if (released) return;
        released = true;
        await file.close().catch(() => undefined);
      };
      return {
        layout,
        open: async (start, endInclusive) => file.createReadStream({ start, end: endInclusive, autoClose: false }),
        release,
      };
    } catch (err) {
      await file.close().catch(() => undefined);
      throw toCallvaultError(err, ErrorCode.SpoolFailed);
    }
  };

  /** Client key mode: the encrypted (stereo) object; a `?track=` client takes its channel after decrypting. */
  const presignedRedirect = async (row: RecordingRow, track?: TrackName): Promise<HttpResult> => {
    const ttl = Math.min(gateway.options.presignedUrlTtlSeconds, MAX_PRESIGNED_URL_TTL_SECONDS);
    const url = await objects.presignedUrl(row, ttl);
    return {
      status: 302,
      headers: {
        location: url,
        'cache-control': 'no-store',
        'x-recording-sid': row.recordingSid,
        'x-callvault-key-mode': 'client',
        ...(track === undefined ? {} : { 'x-callvault-track': track, 'x-callvault-track-channel': String(TRACK_CHANNEL[track]) }),
      },
      body: '',
    };
  };

  /** The audio as a file: PCM behind a synthesized WAV header, MP3 exactly as stored; both with Range. */
  const sendMedia = async (ctx: RequestContext, row: RecordingRow, source: CiphertextSource, live: boolean, track?: TrackName): Promise<StreamedResult | HttpResult> => {
    const { layout } = source;
    const dataKey = objects.dataKey(row);
    let plan: MediaPlan | TrackPlan;
    let trackPlan: TrackPlan | null = null;
    try {
      if (track === undefined) plan = planMedia(layout, ctx.headers.get('range'));
      else plan = trackPlan = planTrack(layout, TRACK_CHANNEL[track], ctx.headers.get('range'));
    } catch (err) {
      if (isCallvaultError(err, ErrorCode.RangeNotSatisfiable)) {
        const size = (err.details?.['size'] as number | undefined) ?? 44 + layout.plaintextSize;
        return json(416, { error: { code: err.code, message: err.message, details: { size } } }, { 'content-range': `bytes */${size}`, 'accept-ranges': 'bytes' });
      }
      throw err;
    }
    const status = plan.partial ? 206 : 200;
    const length = plan.range.end - plan.range.start + 1;
    const responseHeaders: Record<string, string> = {
      'content-type': plan.contentType,
      'accept-ranges': 'bytes',
      'cache-control': 'private, no-store',
      'content-disposition': `inline; filename="${row.recordingSid}${track === undefined ? '' : `-${track}`}.${plan.extension}"`,
      'x-recording-sid': row.recordingSid,
      ...(track === undefined ? {} : { 'x-callvault-track': track }),
      'x-recording-status': apiStatus(row.status),
      ...(plan.partial ? { 'content-range': `bytes ${plan.range.start}-${plan.range.end}/${plan.size}` } : {}),
    };
    if (ctx.method === 'head') {
      return { status, headers: responseHeaders, contentLength: length };
    }
    // Storage is asked before the status goes out, so a missing object still answers with a clean error.
    const ciphertext = plan.pcm ? await source.open(plan.pcm.cipherStart, plan.pcm.cipherEndInclusive, ctx.signal) : null;
    const body = new BackpressuredBody(ctx.res, length, ctx.signal);
    try {
      body.begin(status, responseHeaders);
    } catch (err) {
      ciphertext?.destroy();
      throw err;
    }
    try {
      await body.write(plan.headerSlice);
      if (plan.pcm && ciphertext) {
        const plaintext = decryptPlannedPcm(layout, plan.pcm, dataKey, ciphertext);
        // One track: the stereo frames are deinterleaved as they are decrypted, segment by segment.
        const audio = trackPlan ? deinterleaveChannel(plaintext, trackPlan.channel, trackPlan.skip, trackPlan.take) : plaintext;
        for await (const pcm of audio) await body.write(pcm);
      }
    } catch (err) {
      ciphertext?.destroy();
      if (!(err instanceof ClientGone) && !ctx.aborted) {
        const error = toCallvaultError(err, ErrorCode.StorageUnavailable);
        gateway.options.logger.error({ recordingSid: row.recordingSid, code: error.code, sent: body.sent, err: error }, 'recording stream failed');
        body.abortConnection();
      }
    }
    return streamed(status);
  };

  /** A completed (or uploading) recording's media: the WAV or MP3 (with Range) in server key mode, a presigned redirect in client key mode. */
  const serveMedia = async (ctx: RequestContext, row: RecordingRow, track?: TrackName): Promise<HttpResult | StreamedResult> => {
    if (track !== undefined && (row.channels !== 2 || row.format === 'mp3')) {
      throw new CallvaultError(ErrorCode.TracksNotSeparate, 'the recording mixed its tracks into one channel; they were not kept apart', {
        details: { channels: row.channels, format: row.format },
      });
    }
    if (row.status === 'uploading' && row.keyMode === 'server') {
      // Complete on this gateway's disk, S3 still behind: served from the spool. Once the upload is done
      // the spool is gone and the object serves it.
      const source = await spoolSource(row);
      if (source) {
        try {
          return await sendMedia(ctx, row, source, false, track);
        } finally {
          await source.release();
        }
      }
    }
    if (row.keyMode === 'client') return presignedRedirect(row, track);
    const source = await objectSource(row, ctx.signal);
    return sendMedia(ctx, row, source, false, track);
  };

  const retrieve = async (ctx: RequestContext): Promise<HttpResult | StreamedResult> => {
    const principal = await authenticate(ctx, db, 'read');
    const callId = ctx.params[0] ?? '';
    const wantsLive = ctx.query.get('live') === '1' || ctx.query.get('live') === 'true';
    const trackParam = ctx.query.get('track');
    if (trackParam !== null && trackParam !== 'caller' && trackParam !== 'bot') {
      throw new CallvaultError(ErrorCode.BadRequest, 'track must be caller or bot', { details: { track: trackParam } });
    }
    const track: TrackName | undefined = trackParam === 'caller' || trackParam === 'bot' ? trackParam : undefined;
    // The call's own recordings: a later stream of the call (a second <Stream>, a replayed upgrade) is marked
    // `primary: false` and never served here, however recent; /api/call-recordings lists it with the call.
    const rows = (await recordingsOfCall(principal, callId)).filter((r) => r.metadata['primary'] !== false);
    if (rows.length === 0) throw notFound();
    const inProgress = rows.find((r) => r.status === 'in_progress');
    if (wantsLive && inProgress) {
      if (track !== undefined && inProgress.channels !== 2) {
        throw new CallvaultError(ErrorCode.TracksNotSeparate, 'the recording mixes its tracks into one channel; they are not kept apart', {
          details: { channels: inProgress.channels },
        });
      }
      if (inProgress.keyMode === 'client') {
        throw new CallvaultError(ErrorCode.Conflict, 'live audio is only served in server key mode', {
          details: { status: apiStatus(inProgress.status), keyMode: 'client' },
        });
      }
      const source = await spoolSource(inProgress);
      if (source) {
        try {
          return await sendMedia(ctx, inProgress, source, true, track);
        } finally {
          await source.release();
        }
      }
      // The spool went away between the query and the open (the recording finished), or it lives on a peer.
      const again = await db.recordings.get(principal.orgId, inProgress.id);
      if (again?.status === 'in_progress') {
        // Recording on another gateway of the fleet: the live audio streams from there.
        const handed = await forwardToOwner(ctx, gateway, again.ownerGateway);
        if (handed) return handed;
        throw new CallvaultError(ErrorCode.Conflict, 'the recording is in progress on another gateway instance', {
          details: { status: apiStatus(again.status) },
        });
      }
      return retrieve(ctx);
    }
    const completed = rows.find((r) => r.status === 'completed') ?? rows.find((r) => r.status === 'uploading');
    if (!completed) {
      const current = rows[0]!;
      throw new CallvaultError(ErrorCode.Conflict, `the call's recording is ${current.status.replace('_', ' ')}`, {
        details: { status: apiStatus(current.status) },
      });
    }
    return serveMedia(ctx, completed, track);
  };

  router.route('get', CALL_RECORDING_PATH, 'call_recording_get', retrieve);
  router.route('head', CALL_RECORDING_PATH, 'call_recording_head', retrieve);

  const stopLive = async (orgId: string, row: RecordingRow): Promise<void> => {
    const live = gateway.findLiveRecording(orgId, row.id);
    if (!live) return;
    live.destroy(new CallvaultError(ErrorCode.Destroyed, 'recording deleted through the API'));
    // Settles a finalisation already under way (its upload may have completed the object just now), and
    // waits until the row says how it ended.
    await live.close();
    await live.settled;
  };

  /**
   * Stops the recording if it is live here, then removes its object, spool files and metadata, and its call's
   * transcript, events and metadata (sealed objects and staged rows): they describe what was recorded.
   */
  const remove = async (orgId: string, row: RecordingRow): Promise<void> => {
    if (row.status === 'in_progress' || row.status === 'uploading') await stopLive(orgId, row);
    // Objects first, rows last: a failure half-way leaves rows to retry the deletion with, never an orphan object.
    if (row.callId) await gateway.artifacts.purge(row.callId);
    await objects.purge(row);
    headers.delete(row.objectKey);
    await db.recordings.delete(orgId, row.id);
  };

  router.route('del', CALL_RECORDING_PATH, 'call_recording_delete', async (ctx) => {
    const principal = await authenticate(ctx, db, 'delete');
    const { orgId } = principal;
    const callId = ctx.params[0] ?? '';
    const rows = await recordingsOfCall(principal, callId);
    if (rows.length === 0) throw notFound();
    // One recording of the call is live on a peer: that gateway stops it and deletes them all.
    const elsewhere = rows.find((r) => r.status === 'in_progress' && !gateway.findLiveRecording(orgId, r.id));
    if (elsewhere) {
      const handed = await forwardToOwner(ctx, gateway, elsewhere.ownerGateway);
      if (handed) return handed;
    }
    for (const row of rows) await remove(orgId, row);
    gateway.options.logger.info({ callId, recordings: rows.map((r) => r.recordingSid) }, 'call recordings deleted');
    return { status: 204, headers: {}, body: '' };
  });

  const readPcm: RecordingMedia['readPcm'] = async (row, signal) => {
    if (row.keyMode !== 'server' || row.format === 'mp3') return null;
    // An uploading recording is read from this gateway's spool while it has it, else from the object.
    const open = async (): Promise<CiphertextSource> => (row.status === 'uploading' ? await spoolSource(row) : null) ?? (await objectSource(row, signal));
    const probe = await open();
    const { header, plaintextSize } = probe.layout;
    await probe.release();
    if (header.sampleFormat !== 'pcm_s16le') return null;
    const dataKey = objects.dataKey(row);
    // Opened only once iterated, so a caller that wanted the format and size alone holds nothing open.
    async function* pcm(): AsyncGenerator<Uint8Array> {
      const source = await open();
      try {
        const plan = planMedia(source.layout, undefined).pcm;
        if (!plan) return;
        const ciphertext = await source.open(plan.cipherStart, plan.cipherEndInclusive, signal);
        try {
          yield* decryptPlannedPcm(source.layout, plan, dataKey, ciphertext);
        } finally {
          ciphertext.destroy();
        }
      } finally {
        await source.release();
      }
    }
    return { channels: header.channels, sampleRate: header.sampleRate, plaintextSize, pcm: pcm() };
  };

  return { serveMedia, remove, readPcm };
}
