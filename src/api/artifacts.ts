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
 */
import { z } from 'zod';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import { EnergyVad, type EnergyVadResult } from '../audio/vad.js';
import type { Call as CallRow, CallEventInput, JsonObject, Recording as RecordingRow, TranscriptEntryInput } from '../db/index.js';
import type { GatewayPort } from '../gateway/port.js';
import { authenticate, canSeeCall, type Principal } from '../http/auth.js';
import { json, streamed, type RequestContext, type Router } from '../http/http.js';
import { wavHeader } from '../audio/wav.js';
import { BackpressuredBody, ClientGone, deinterleaveChannel } from './wav-stream.js';
import { zipSize, zipStream, type ZipEntry } from './zip.js';
import { apiStatus, jsonBody } from './manage/common.js';
import type { RecordingMedia } from './recordings.js';
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

/** A Date as ISO 8601 UTC with microseconds (the µs of a JavaScript Date are always 000). */
export function isoMicros(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function isoAfter(base: Date, ms: number): string {
  return isoMicros(new Date(base.getTime() + Math.round(ms)));
}

export interface SessionEvent {
  timestamp: string;
  type: string;
  /** Position on the call's media timeline (ms from the stream's first sample), where the event has one. */
  media_ms: number | null;
  source: 'gateway' | 'posted';
  [key: string]: unknown;
}

function list(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null) : [];
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/** The platform's id of the conversation: the stream's custom parameter, the call's metadata, else the CallSid / room name. */
export function conversationIdOf(call: { externalId: string; metadata: Record<string, unknown> }, recording: RecordingRow | undefined): string {
  const custom = (recording?.metadata['customParameters'] ?? {}) as Record<string, unknown>;
  return str(custom['conversationId']) ?? str(call.metadata['conversationId']) ?? call.externalId;
}

interface TrackStat {
  role: string;
  chunks: number;
  bytes: number;
  mediaMs: number;
}

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

  const primaryOf = (recordings: readonly RecordingRow[]): RecordingRow | undefined => recordings.find((r) => r.metadata['primary'] !== false);

  const identity = (call: CallRow, recordings: readonly RecordingRow[]) => {
    const primary = primaryOf(recordings);
    return {
      conversation_id: conversationIdOf(call, primary),
      session_id: primary?.recordingSid ?? call.id,
      start_time: isoMicros(call.startedAt),
      end_time: call.endedAt ? isoMicros(call.endedAt) : null,
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

  const transcriptOf = async (call: CallRow, recordings: readonly RecordingRow[]) => ({
    ...identity(call, recordings),
    entries: (await db.artifacts.transcript(call.id)).map((e) => ({
      timestamp: e.timestamp,
      channel: e.channel,
      type: e.type,
      text: e.text,
      confidence: e.confidence,
      duration_ms: e.durationMs,
    })),
  });

  router.route('get', CALL_TRANSCRIPT_PATH, 'call_transcript_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    return json(200, await transcriptOf(call, recordings), { 'cache-control': 'private, no-store' });
  });

  /** Every event the gateway kept (call and recording rows) and every posted one, in time order. */
  const eventsOf = async (call: CallRow, recordings: readonly RecordingRow[]): Promise<SessionEvent[]> => {
    const out: SessionEvent[] = [];
    const add = (timestamp: string, type: string, mediaMs: number | null, fields: Record<string, unknown> = {}, source: SessionEvent['source'] = 'gateway') =>
      // A posted event's own data never overrides the fields every event has.
      out.push({ ...fields, timestamp, type, media_ms: mediaMs, source });
    add(isoMicros(call.startedAt), 'call_started', 0, { call_id: call.externalId, call_source: call.source });
    for (const r of recordings) {
      const m = r.metadata;
      const streamSid = str(m['streamSid']);
      const origin = num(m['originMs']);
      if (streamSid) {
        add(isoMicros(r.startedAt), 'stream_started', origin, { stream_sid: streamSid, tracks: m['tracks'] ?? null, media_format: m['mediaFormat'] ?? null });
      }
      add(isoMicros(r.startedAt), 'recording_started', origin, {
        recording_sid: r.recordingSid,
        channels: r.channels,
        sample_rate: r.sampleRate,
        key_mode: r.keyMode,
        primary: m['primary'] !== false,
      });
      for (const d of list(m['dtmf'])) {
        add(str(d['receivedAt']) ?? isoMicros(r.startedAt), 'dtmf', num(d['timestampMs']), { recording_sid: r.recordingSid, digit: d['digit'] ?? null, track: d['track'] ?? null });
      }
      for (const k of list(m['marks'])) {
        add(str(k['receivedAt']) ?? isoMicros(r.startedAt), 'mark', null, { recording_sid: r.recordingSid, name: k['name'] ?? null });
      }
      for (const p of list(m['pauses'])) {
        const pausedAt = str(p['pausedAt']);
        if (pausedAt) add(pausedAt, 'recording_paused', num(p['fromMediaMs']), { recording_sid: r.recordingSid, behavior: p['behavior'] ?? null });
        const resumedAt = str(p['resumedAt']);
        if (resumedAt) add(resumedAt, 'recording_resumed', num(p['toMediaMs']), { recording_sid: r.recordingSid });
      }
      for (const g of list(m['gaps'])) {
        // A gap has no wall-clock time of its own: its timestamp is the recording's start plus its position.
        const fromMs = num(g['fromMs']) ?? 0;
        add(isoAfter(r.startedAt, fromMs), 'gap', fromMs + (origin ?? 0), {
          recording_sid: r.recordingSid,
          track: g['track'] ?? null,
          to_media_ms: (num(g['toMs']) ?? fromMs) + (origin ?? 0),
          reason: g['reason'] ?? null,
        });
      }
      if (r.endedAt) {
        add(isoMicros(r.endedAt), 'recording_stopped', r.durationMs === null ? null : r.durationMs + (origin ?? 0), {
          recording_sid: r.recordingSid,
          status: apiStatus(r.status),
          duration_ms: r.durationMs,
          ...(r.errorCode ? { error_code: r.errorCode } : {}),
        });
      }
      const close = m['streamClose'] as Record<string, unknown> | undefined;
      if (close && typeof close === 'object') {
        add(str(close['at']) ?? isoMicros(r.endedAt ?? r.startedAt), 'stream_stopped', null, {
          recording_sid: r.recordingSid,
          close_code: close['code'] ?? null,
          close_reason: close['reason'] ?? null,
        });
      }
    }
    for (const e of await db.artifacts.transcript(call.id)) {
      add(e.timestamp, 'transcript_entry', null, { channel: e.channel, entry_type: e.type, text: e.text, confidence: e.confidence, duration_ms: e.durationMs }, 'posted');
    }
    for (const e of await db.artifacts.events(call.id)) add(e.timestamp, e.type, e.mediaMs, e.data, 'posted');
    if (call.endedAt) add(isoMicros(call.endedAt), 'call_ended', null, { status: call.status });
    // Every timestamp as ISO 8601 UTC with microseconds: then text order is time order; the sort is stable.
    const normalise = (t: string): string => (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(t) ? t : isoMicros(new Date(t)));
    return out
      .map((e) => ({ ...e, timestamp: normalise(e.timestamp) }))
      .sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  };

  router.route('get', CALL_EVENTS_PATH, 'call_events_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    return json(200, { ...identity(call, recordings), events: await eventsOf(call, recordings) }, { 'cache-control': 'private, no-store' });
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

  const metadataOf = async (ctx: RequestContext, call: CallRow, recordings: readonly RecordingRow[]) => {
    const ids = identity(call, recordings);
    const primary = primaryOf(recordings);
    const stats = (call.metadata['trackStats'] ?? {}) as Record<string, TrackStat>;
    const sum = (role: string, field: 'chunks' | 'bytes' | 'mediaMs'): number | null => {
      const tracks = Object.values(stats).filter((s) => s && s.role === role);
      return tracks.length === 0 ? null : tracks.reduce((n, s) => n + (num(s[field]) ?? 0), 0);
    };
    const transcript = await db.artifacts.transcript(call.id);
    const functionCalls = (await db.artifacts.events(call.id, 'function_call')).map((e) => ({
      timestamp: e.timestamp,
      function_name: e.data['function_name'] ?? null,
      arguments: e.data['arguments'] ?? null,
      result: e.data['result'] ?? null,
      call_id: e.data['call_id'] ?? null,
    }));
    const speech = await speechOf(primary, ctx.signal);
    const stereo = primary?.channels === 2;
    const botMs = sum('agent', 'mediaMs');
    const callerMs = sum('caller', 'mediaMs');
    return {
      ...ids,
      duration_seconds: call.endedAt ? (call.endedAt.getTime() - call.startedAt.getTime()) / 1000 : null,
      caller_audio_chunks: sum('caller', 'chunks'),
      bot_audio_chunks: sum('agent', 'chunks'),
      caller_audio_bytes: sum('caller', 'bytes'),
      bot_audio_bytes: sum('agent', 'bytes'),
      caller_audio_duration_seconds: callerMs === null ? null : callerMs / 1000,
      bot_audio_duration_seconds: botMs === null ? null : botMs / 1000,
      transcript_entries: transcript.length,
      function_calls: functionCalls,
      call_id: call.externalId,
      source: call.source,
      status: call.status,
      tracks: stats,
      recording: primary
        ? {
            recording_sid: primary.recordingSid,
            status: apiStatus(primary.status),
            sample_rate: primary.sampleRate,
            channels: primary.channels,
            format: primary.format === 'mp3' ? 'mp3' : 'wav',
            key_mode: primary.keyMode,
            duration_seconds: primary.durationMs === null ? null : primary.durationMs / 1000,
            pauses: list(primary.metadata['pauses']),
            gaps: list(primary.metadata['gaps']),
          }
        : null,
      recordings: recordings.length,
      speech: speech
        ? {
            detector: speech.detector,
            threshold_dbfs: speech.thresholdDbfs,
            frame_ms: speech.frameMs,
            ...(stereo
              ? { caller_speech_seconds: speech.speechMs[0]! / 1000, bot_speech_seconds: speech.speechMs[1]! / 1000 }
              : { mixed_speech_seconds: speech.speechMs[0]! / 1000 }),
            analysed_seconds: (speech.analysedMs[0] ?? 0) / 1000,
          }
        : null,
    };
  };

  router.route('get', CALL_METADATA_PATH, 'call_metadata_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { call, recordings } = await callOf(principal, ctx.params[0] ?? '');
    return json(200, await metadataOf(ctx, call, recordings), { 'cache-control': 'private, no-store' });
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
    const transcript = jsonFile(await transcriptOf(call, recordings));
    const metadata = jsonFile(await metadataOf(ctx, call, recordings));
    const events = jsonFile({ ...ids, events: await eventsOf(call, recordings) });
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
