/**
 * What a call leaves behind besides its audio, per call and scoped like the recording route (another
 * organisation's call, or another user's for a user-bound key, is a 404):
 * - `POST /calls/:callId/transcript` `{ entries }` and `POST /calls/:callId/events` `{ events }`: what a
 *   voice-agent bridge posts as it goes (function calls are events of type `function_call`);
 * - `GET /calls/:callId/transcript` (transcript.json), `GET /calls/:callId/events` (session_events.json),
 *   `GET /calls/:callId/metadata` (call_metadata.json).
 * `session_id` is callvault's id of the call's recording session: the recording SID of its primary
 * recording (the call's own id when it has none). `conversation_id` is the platform's id: the stream's
 * custom parameter `conversationId` (LiveKit: the room metadata's, kept in the call row), else the CallSid / room name.
 * Stored encrypted (see src/gateway/artifact-vault.ts): a server-key call's documents are served decrypted;
 * a client-key call's answer 302 to a short-lived URL of the sealed object (409 ARTIFACTS_NOT_SEALED until
 * the call has ended), and a POST after it ended is a 409 ARTIFACTS_SEALED.
 * The documents themselves are built in src/gateway/artifact-documents.ts.
 */
import { z } from 'zod';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import { EnergyVad, type EnergyVadResult } from '../audio/vad.js';
import type { ArtifactKind, Call as CallRow, CallEventInput, JsonObject, Recording as RecordingRow, TranscriptEntryInput } from '../db/index.js';
import {
  artifactIdentity as identity,
  eventsDocument,
  metadataDocument,
  primaryOf,
  transcriptDocument,
  type GatewayPort,
  type PostedArtifacts,
} from '../gateway/port.js';
import { authenticate, canSeeCall, type Principal } from '../http/auth.js';
import { json, streamed, type HttpResult, type RequestContext, type Router } from '../http/http.js';
import { wavHeader } from '../audio/wav.js';
import { BackpressuredBody, ClientGone, deinterleaveChannel } from './wav-stream.js';
import { zipSize, zipStream, type ZipEntry } from './zip.js';
import { apiStatus, jsonBody } from './manage/common.js';
import { MAX_PRESIGNED_URL_TTL_SECONDS, type RecordingMedia } from './recordings.js';
import { addArtifactPaths } from './artifacts-openapi.js';

export const CALL_TRANSCRIPT_PATH = '/calls/:callId/transcript';
export const CALL_EVENTS_PATH = '/calls/:callId/events';
export const CALL_METADATA_PATH = '/calls/:callId/metadata';
export const CALL_BUNDLE_PATH = '/calls/:callId/bundle';
/** Entries or events per request. */
export const MAX_ARTIFACTS_PER_POST = 1000;
const MAX_ARTIFACT_BODY_BYTES = 1024 * 1024;

const Timestamp = z.iso.datetime({ offset: true }).describe('ISO 8601 with an offset (Z or ±hh:mm); kept to the microsecond.');

export const TranscriptEntrySchema = z.strictObject({
  timestamp: Timestamp,
  channel: z.enum(['caller', 'bot']),
  type: z.enum(['input', 'output']),
  text: z.string().max(100_000),
  confidence: z.number().min(0).max(1).nullable().optional(),
  duration_ms: z.number().nonnegative().finite().nullable().optional(),
});

export const TranscriptPostSchema = z.strictObject({ entries: z.array(TranscriptEntrySchema).min(1).max(MAX_ARTIFACTS_PER_POST) });

const Json = z.json();

export const FunctionCallEventSchema = z.strictObject({
  type: z.literal('function_call'),
  timestamp: Timestamp,
  media_ms: z.number().nonnegative().finite().nullable().optional(),
  function_name: z.string().min(1).max(256),
  arguments: Json.optional(),
  result: Json.optional(),
  call_id: z.string().max(256).nullable().optional(),
});

/** Any other event the bot knows of: a type of its own naming, and free-form data. */
export const GenericEventSchema = z.strictObject({
  type: z
    .string()
    .regex(/^[a-z][a-z0-9_.-]{0,63}$/, 'lower-case letters, digits, _ . - (at most 64)')
    .refine((t) => t !== 'function_call', 'function_call events need function_name'),
  timestamp: Timestamp,
  media_ms: z.number().nonnegative().finite().nullable().optional(),
  data: z.record(z.string(), Json).optional(),
});

export const SessionEventSchema = z.union([FunctionCallEventSchema, GenericEventSchema]);
export const EventsPostSchema = z.strictObject({ events: z.array(SessionEventSchema).min(1).max(MAX_ARTIFACTS_PER_POST) });

function notFound(): CallvaultError {
  return new CallvaultError(ErrorCode.NotFound, 'no such call');
}

export { conversationIdOf, isoMicros } from '../gateway/port.js';

export function registerArtifactRoutes(router: Router, gateway: GatewayPort, media: RecordingMedia): void {
  const { db } = gateway;
  addArtifactPaths({ transcriptPost: TranscriptPostSchema, eventsPost: EventsPostSchema });

  /** The call (by CallSid / room SID, or its callvault id) as the key may see it, and its recordings oldest first. */
  const callOf = async (principal: Principal, callId: string): Promise<{ call: CallRow; recordings: RecordingRow[] }> => {
    const call = (await db.calls.getByExternalId(principal.orgId, callId)) ?? (await db.calls.get(principal.orgId, callId));
    if (!call || !canSeeCall(principal, call.metadata)) throw notFound();
    const page = await db.recordings.list(principal.orgId, { callSid: call.externalId, page: 0, limit: 1000, ...(principal.userId === null ? {} : { userId: principal.userId }) });
    const recordings = page.rows.filter((r) => r.callId === call.id).sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime());
    return { call, recordings };
  };

  /**
   * What the key may read of the call's artifacts: in server key mode everything posted (decrypted); in client
   * key mode a 302 to the sealed object of `kind` (or 409 before the call has ended and sealed them).
   */
  const readable = async (call: CallRow, recordings: readonly RecordingRow[], kind: ArtifactKind): Promise<{ posted: PostedArtifacts } | { redirect: HttpResult }> => {
    const view = await gateway.artifacts.view(call, recordings);
    if (view.keyMode === 'server') return { posted: await gateway.artifacts.posted(call) };
    const sealed = view.sealed.find((s) => s.kind === kind);
    if (!sealed) {
      throw new CallvaultError(ErrorCode.ArtifactsNotSealed, "a client-key call's artifacts are sealed under its key when the call ends; ask again then", {
        details: { keyMode: 'client' },
      });
    }
    const ttl = Math.min(gateway.options.presignedUrlTtlSeconds, MAX_PRESIGNED_URL_TTL_SECONDS);
    return {
      redirect: {
        status: 302,
        headers: { location: await gateway.artifacts.presignedUrl(sealed, ttl), 'cache-control': 'no-store', 'x-callvault-key-mode': 'client' },
        body: '',
      },
    };
  };

  router.route('post', CALL_TRANSCRIPT_PATH, 'call_transcript_post', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const body = await jsonBody(ctx, TranscriptPostSchema, MAX_ARTIFACT_BODY_BYTES);
    const { call } = await callOf(principal, ctx.params[0] ?? '');
    const entries: TranscriptEntryInput[] = body.entries.map((e) => ({
      timestamp: e.timestamp,
      channel: e.channel,
      type: e.type,
      text: e.text,
      confidence: e.confidence ?? null,
      durationMs: e.duration_ms ?? null,
    }));
    const stored = await db.artifacts.addTranscriptEntries(call.id, entries);
    return json(201, { stored });
  });

  router.route('post', CALL_EVENTS_PATH, 'call_events_post', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const body = await jsonBody(ctx, EventsPostSchema, MAX_ARTIFACT_BODY_BYTES);
    const { call } = await callOf(principal, ctx.params[0] ?? '');
    const events: CallEventInput[] = body.events.map((e) => {
      if (e.type === 'function_call' && 'function_name' in e) {
        return {
          timestamp: e.timestamp,
          type: e.type,
          mediaMs: e.media_ms ?? null,
          data: { function_name: e.function_name, arguments: e.arguments ?? null, result: e.result ?? null, call_id: e.call_id ?? null } as JsonObject,
        };
      }
      const generic = e as z.infer<typeof GenericEventSchema>;
      return { timestamp: generic.timestamp, type: generic.type, mediaMs: generic.media_ms ?? null, data: (generic.data ?? {}) as JsonObject };
    });
    const stored = await db.artifacts.addEvents(call.id, events);
    return json(201, { stored });
  });

  router.route('get', CALL_TRANSCRIPT_PATH, 'call_transcript_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    const artifacts = await readable(call, recordings, 'transcript');
    if ('redirect' in artifacts) return artifacts.redirect;
    return json(200, transcriptDocument(call, recordings, artifacts.posted), { 'cache-control': 'private, no-store' });
  });

  router.route('get', CALL_EVENTS_PATH, 'call_events_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    const artifacts = await readable(call, recordings, 'events');
    if ('redirect' in artifacts) return artifacts.redirect;
    return json(200, eventsDocument(call, recordings, artifacts.posted), { 'cache-control': 'private, no-store' });
  });

  /** Speech per channel by the energy-based VAD, from the decrypted audio (server key mode); null otherwise. */
  const speechOf = async (row: RecordingRow | undefined, signal: AbortSignal): Promise<EnergyVadResult | null> => {
    if (!row || (row.status !== 'completed' && row.status !== 'uploading')) return null;
    const audio = await media.readPcm(row, signal);
    if (!audio) return null;
    const vad = new EnergyVad(audio.channels, audio.sampleRate);
    for await (const chunk of audio.pcm) vad.push(chunk);
    return vad.result();
  };

  const metadataOf = async (ctx: RequestContext, call: CallRow, recordings: readonly RecordingRow[], posted: PostedArtifacts) =>
    metadataDocument(call, recordings, posted, await speechOf(primaryOf(recordings), ctx.signal));

  router.route('get', CALL_METADATA_PATH, 'call_metadata_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    const artifacts = await readable(call, recordings, 'metadata');
    if ('redirect' in artifacts) return artifacts.redirect;
    return json(200, await metadataOf(ctx, call, recordings, artifacts.posted), { 'cache-control': 'private, no-store' });
  });

  /** `{session_id}_{YYYYMMDD_HHMMSS}` of the call's start (UTC), as the bridges name their directories. */
  const folderOf = (sessionId: string, startedAt: Date): string => {
    const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
    return `${sessionId}_${stamp}`;
  };

  router.route('get', CALL_BUNDLE_PATH, 'call_bundle_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    const primary = primaryOf(recordings);
    if (!primary) throw new CallvaultError(ErrorCode.NotFound, 'no recording for this call');
    if (primary.status !== 'completed' && primary.status !== 'uploading') {
      throw new CallvaultError(ErrorCode.Conflict, `the call's recording is ${apiStatus(primary.status)}`, { details: { status: apiStatus(primary.status) } });
    }
    if (primary.keyMode !== 'server') {
      throw new CallvaultError(ErrorCode.Conflict, 'the bundle is served in server key mode only', { details: { keyMode: primary.keyMode } });
    }
    if (primary.channels !== 2 || primary.format === 'mp3') {
      throw new CallvaultError(ErrorCode.TracksNotSeparate, 'the recording mixed its tracks into one channel; they were not kept apart', {
        details: { channels: primary.channels, format: primary.format },
      });
    }
    const probe = await media.readPcm(primary, ctx.signal);
    if (!probe) throw new CallvaultError(ErrorCode.Conflict, 'the recording is not PCM');
    // Its pcm is never iterated (so nothing was opened): each entry below reads the audio on its own.
    const { sampleRate, plaintextSize } = probe;
    const monoBytes = Math.floor(plaintextSize / 4) * 2;
    const ids = identity(call, recordings);
    const folder = folderOf(ids.session_id, call.startedAt);
    const jsonFile = (value: unknown) => Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8');
    const posted = await gateway.artifacts.posted(call);
    const transcript = jsonFile(transcriptDocument(call, recordings, posted));
    const metadata = jsonFile(await metadataOf(ctx, call, recordings, posted));
    const events = jsonFile(eventsDocument(call, recordings, posted));
    const pcmOf = async () => {
      const audio = await media.readPcm(primary, ctx.signal);
      if (!audio) throw new CallvaultError(ErrorCode.Conflict, 'the recording is not PCM');
      return audio.pcm;
    };
    const track = (channel: 0 | 1) =>
      async function* (): AsyncGenerator<Uint8Array> {
        yield wavHeader({ sampleRate, channels: 1, dataBytes: monoBytes });
        yield* deinterleaveChannel(await pcmOf(), channel, 0, monoBytes);
      };
    const entries: ZipEntry[] = [
      { name: `${folder}/caller_audio.wav`, size: 44 + monoBytes, data: track(0) },
      { name: `${folder}/bot_audio.wav`, size: 44 + monoBytes, data: track(1) },
      {
        name: `${folder}/final_stereo_recording.wav`,
        size: 44 + plaintextSize,
        data: async function* () {
          yield wavHeader({ sampleRate, channels: 2, dataBytes: plaintextSize });
          yield* await pcmOf();
        },
      },
      { name: `${folder}/transcript.json`, size: transcript.length, data: () => [transcript] },
      { name: `${folder}/call_metadata.json`, size: metadata.length, data: () => [metadata] },
      { name: `${folder}/session_events.json`, size: events.length, data: () => [events] },
    ];
    const total = zipSize(entries);
    const body = new BackpressuredBody(ctx.res, total, ctx.signal);
    const archive = zipStream(entries, call.startedAt);
    // The first bytes (and the 4 GiB check) before the status goes out.
    const first = await archive.next();
    body.begin(200, {
      'content-type': 'application/zip',
      'content-disposition': `attachment; filename="${folder}.zip"`,
      'cache-control': 'private, no-store',
      'x-recording-sid': primary.recordingSid,
    });
    try {
      if (!first.done) await body.write(first.value);
      for await (const chunk of archive) await body.write(chunk);
    } catch (err) {
      if (!(err instanceof ClientGone) && !ctx.aborted) {
        const error = toCallvaultError(err, ErrorCode.StorageUnavailable);
        gateway.options.logger.error({ recordingSid: primary.recordingSid, code: error.code, sent: body.sent, err: error }, 'bundle stream failed');
        body.abortConnection();
      }
    }
    return streamed(200);
  });
}
