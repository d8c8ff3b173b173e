/**
 * A call's transcript.json, session_events.json and call_metadata.json, built from its rows and what the bot
 * posted. The same builders serve the API (server key mode) and seal the documents into their objects when
 * the call ends, so what a client-key holder decrypts has the shape the API would have answered.
 * `session_id` is callvault's id of the call's recording session: the recording SID of its primary
 * recording (the call's own id when it has none). `conversation_id` is the platform's id: the stream's
 * custom parameter `conversationId`, else the CallSid / room name.
 */
import type { EnergyVadResult } from '../audio/vad.js';
import type { Call as CallRow, CallEvent, JsonObject, Recording as RecordingRow, TranscriptEntry } from '../db/index.js';

/** What the bot (or LiveKit, ElevenLabs, a transcription engine) posted for the call. */
export interface PostedArtifacts {
  entries: TranscriptEntry[];
  events: CallEvent[];
}

/** A Date as ISO 8601 UTC with microseconds (the µs of a JavaScript Date are always 000). */
export function isoMicros(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function isoAfter(base: Date, ms: number): string {
  return isoMicros(new Date(base.getTime() + Math.round(ms)));
}

/** The API's spelling of a stored status (`in_progress` → `in-progress`). */
function apiStatus(status: string): string {
  return status.replace(/_/g, '-');
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

interface TrackStat {
  role: string;
  chunks: number;
  bytes: number;
  mediaMs: number;
}

export function primaryOf(recordings: readonly RecordingRow[]): RecordingRow | undefined {
  return recordings.find((r) => r.metadata['primary'] !== false);
}

/** The platform's id of the conversation: the stream's custom parameter, the call's metadata (LiveKit: the room metadata's), else the CallSid / room name. */
export function conversationIdOf(call: { externalId: string; metadata: Record<string, unknown> }, recording: RecordingRow | undefined): string {
  const custom = (recording?.metadata['customParameters'] ?? {}) as Record<string, unknown>;
  return str(custom['conversationId']) ?? str(call.metadata['conversationId']) ?? call.externalId;
}

export function artifactIdentity(call: CallRow, recordings: readonly RecordingRow[]) {
  const primary = primaryOf(recordings);
  return {
    conversation_id: conversationIdOf(call, primary),
    session_id: primary?.recordingSid ?? call.id,
    start_time: isoMicros(call.startedAt),
    end_time: call.endedAt ? isoMicros(call.endedAt) : null,
  };
}

/** One transcript entry as transcript.json spells it. */
export function transcriptEntryJson(e: PostedArtifacts['entries'][number]) {
  return { timestamp: e.timestamp, channel: e.channel, type: e.type, text: e.text, confidence: e.confidence, duration_ms: e.durationMs };
}

export function transcriptDocument(call: CallRow, recordings: readonly RecordingRow[], posted: PostedArtifacts) {
  return { ...artifactIdentity(call, recordings), entries: posted.entries.map(transcriptEntryJson) };
}

/** Every event the gateway kept (call and recording rows) and every posted one, in time order. */
export function sessionEvents(call: CallRow, recordings: readonly RecordingRow[], posted: PostedArtifacts): SessionEvent[] {
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
  for (const e of posted.entries) {
    add(e.timestamp, 'transcript_entry', null, { channel: e.channel, entry_type: e.type, text: e.text, confidence: e.confidence, duration_ms: e.durationMs }, 'posted');
  }
  for (const e of posted.events) add(e.timestamp, e.type, e.mediaMs, e.data, 'posted');
  if (call.endedAt) add(isoMicros(call.endedAt), 'call_ended', null, { status: call.status });
  // Every timestamp as ISO 8601 UTC with microseconds: then text order is time order; the sort is stable.
  const normalise = (t: string): string => (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(t) ? t : isoMicros(new Date(t)));
  return out.map((e) => ({ ...e, timestamp: normalise(e.timestamp) })).sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
}

export function eventsDocument(call: CallRow, recordings: readonly RecordingRow[], posted: PostedArtifacts) {
  return { ...artifactIdentity(call, recordings), events: sessionEvents(call, recordings, posted) };
}

/** `speech`: from the energy-based VAD over the decrypted audio (server key mode), or null when it was not run. */
export function metadataDocument(call: CallRow, recordings: readonly RecordingRow[], posted: PostedArtifacts, speech: EnergyVadResult | null) {
  const ids = artifactIdentity(call, recordings);
  const primary = primaryOf(recordings);
  const stats = (call.metadata['trackStats'] ?? {}) as Record<string, TrackStat>;
  const sum = (role: string, field: 'chunks' | 'bytes' | 'mediaMs'): number | null => {
    const tracks = Object.values(stats).filter((s) => s && s.role === role);
    return tracks.length === 0 ? null : tracks.reduce((n, s) => n + (num(s[field]) ?? 0), 0);
  };
  const functionCalls = posted.events
    .filter((e) => e.type === 'function_call')
    .map((e) => ({
      timestamp: e.timestamp,
      function_name: e.data['function_name'] ?? null,
      arguments: e.data['arguments'] ?? null,
      result: e.data['result'] ?? null,
      call_id: e.data['call_id'] ?? null,
    }));
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
    transcript_entries: posted.entries.length,
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
}

/** The posted artifacts back out of sealed transcript.json and session_events.json (server key mode re-seals from them). */
export function postedFromDocuments(transcript: unknown, events: unknown): PostedArtifacts {
  const entries: TranscriptEntry[] = list((transcript as { entries?: unknown } | null)?.entries).map((e) => ({
    timestamp: String(e['timestamp']),
    channel: e['channel'] === 'bot' ? 'bot' : 'caller',
    type: e['type'] === 'output' ? 'output' : 'input',
    text: String(e['text'] ?? ''),
    confidence: num(e['confidence']),
    durationMs: num(e['duration_ms']),
  }));
  const postedEvents: CallEvent[] = list((events as { events?: unknown } | null)?.events)
    .filter((e) => e['source'] === 'posted' && e['type'] !== 'transcript_entry')
    .map((e) => {
      const { timestamp, type, media_ms: mediaMs, source: _source, ...data } = e;
      return { timestamp: String(timestamp), type: String(type), mediaMs: num(mediaMs), data: data as JsonObject };
    });
  return { entries, events: postedEvents };
}
