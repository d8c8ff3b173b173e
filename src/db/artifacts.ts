/**
 * A call's transcript entries and session events as posted by the bot (a voice-agent bridge). Timestamps
 * are kept with PostgreSQL's microsecond precision and read back as ISO 8601 UTC strings with six decimals,
 * so nothing is lost to JavaScript's millisecond Date.
 */
import { isUuid, toNullableNumber, type Executor } from './executor.js';
import type { JsonObject } from './types.js';

export type TranscriptChannel = 'caller' | 'bot';
export type TranscriptKind = 'input' | 'output';

export interface TranscriptEntryInput {
  /** ISO 8601 with an offset; stored to the microsecond. */
  timestamp: string;
  channel: TranscriptChannel;
  type: TranscriptKind;
  text: string;
  confidence: number | null;
  durationMs: number | null;
}

export interface TranscriptEntry extends TranscriptEntryInput {
  /** ISO 8601 UTC with microseconds, e.g. 2026-12-01T14:30:22.123456Z. */
  timestamp: string;
}

export interface CallEventInput {
  timestamp: string;
  type: string;
  /** Position on the call's media timeline, in ms, when the poster knows it. */
  mediaMs: number | null;
  data: JsonObject;
}

export type CallEvent = CallEventInput;

export interface ArtifactsRepository {
  /** Appends entries to the call's transcript in one statement (all or none). */
  addTranscriptEntries(callId: string, entries: readonly TranscriptEntryInput[]): Promise<number>;
  /** In time order (then in the order posted). */
  transcript(callId: string): Promise<TranscriptEntry[]>;
  /**
   * A transcript brought in from elsewhere (`source`, its id there), stored once per organisation: claims
   * (orgId, source, externalId) and appends the entries in one statement. `claimed: false` when it was already
   * stored (then nothing is added); `callId` is the call the first claim stored it for.
   */
  importTranscript(
    orgId: string,
    source: string,
    externalId: string,
    callId: string,
    entries: readonly TranscriptEntryInput[],
  ): Promise<{ claimed: boolean; stored: number; callId: string | null }>;
  addEvents(callId: string, events: readonly CallEventInput[]): Promise<number>;
  events(callId: string, type?: string): Promise<CallEvent[]>;
  /**
   * Deletes the call's transcript entries and events once the call has no recording left (the retention
   * sweeper, after the last one went); answers how many rows went, 0 while a recording remains.
   */
  deleteIfUnrecorded(callId: string): Promise<{ transcriptEntries: number; events: number }>;
}

/** ISO 8601 UTC with microseconds, computed by PostgreSQL from the stored timestamptz. */
const ISO_MICROS = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

interface EntryRow {
  at: string;
  channel: TranscriptChannel;
  kind: TranscriptKind;
  text: string;
  confidence: number | null;
  duration_ms: number | null;
}

interface EventRow {
  at: string;
  type: string;
  media_ms: number | null;
  data: JsonObject;
}

export function createArtifactsRepository(db: Executor): ArtifactsRepository {
  return {
    async addTranscriptEntries(callId, entries) {
      if (!isUuid(callId) || entries.length === 0) return 0;
      const { rowCount } = await db.query(
        'artifacts.addTranscriptEntries',
        `INSERT INTO call_transcript_entries (call_id, at, channel, kind, text, confidence, duration_ms)
         SELECT $1, e.at, e.channel, e.kind, e.text, e.confidence, e.duration_ms
         FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::double precision[], $7::double precision[])
           AS e(at, channel, kind, text, confidence, duration_ms)`,
        [
          callId,
          entries.map((e) => e.timestamp),
          entries.map((e) => e.channel),
          entries.map((e) => e.type),
          entries.map((e) => e.text),
          entries.map((e) => e.confidence),
          entries.map((e) => e.durationMs),
        ],
      );
      return rowCount ?? 0;
    },

    async importTranscript(orgId, source, externalId, callId, entries) {
      if (!isUuid(callId)) return { claimed: false, stored: 0, callId: null };
      const { rows } = await db.query<{ claimed: string; stored: string; existing: string | null }>(
        'artifacts.importTranscript',
        `WITH claimed AS (
           INSERT INTO call_transcript_imports (org_id, source, external_id, call_id, entries)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, source, external_id) DO NOTHING RETURNING call_id
         ), stored AS (
           INSERT INTO call_transcript_entries (call_id, at, channel, kind, text, confidence, duration_ms)
           SELECT claimed.call_id, e.at, e.channel, e.kind, e.text, e.confidence, e.duration_ms
           FROM claimed, unnest($6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::double precision[], $11::double precision[])
             AS e(at, channel, kind, text, confidence, duration_ms)
           RETURNING 1
         )
         SELECT (SELECT count(*) FROM claimed) AS claimed, (SELECT count(*) FROM stored) AS stored,
           (SELECT call_id::text FROM call_transcript_imports WHERE org_id = $1 AND source = $2 AND external_id = $3) AS existing`,
        [
          orgId,
          source,
          externalId,
          callId,
          entries.length,
          entries.map((e) => e.timestamp),
          entries.map((e) => e.channel),
          entries.map((e) => e.type),
          entries.map((e) => e.text),
          entries.map((e) => e.confidence),
          entries.map((e) => e.durationMs),
        ],
      );
      const row = rows[0];
      const claimed = Number(row?.claimed ?? 0) > 0;
      return { claimed, stored: Number(row?.stored ?? 0), callId: claimed ? callId : (row?.existing ?? null) };
    },

    async transcript(callId) {
      if (!isUuid(callId)) return [];
      const { rows } = await db.query<EntryRow>(
        'artifacts.transcript',
        `SELECT ${ISO_MICROS('at')} AS at, channel, kind, text, confidence, duration_ms
         FROM call_transcript_entries WHERE call_id = $1 ORDER BY at, id`,
        [callId],
      );
      return rows.map((r) => ({
        timestamp: r.at,
        channel: r.channel,
        type: r.kind,
        text: r.text,
        confidence: toNullableNumber(r.confidence),
        durationMs: toNullableNumber(r.duration_ms),
      }));
    },

    async addEvents(callId, events) {
      if (!isUuid(callId) || events.length === 0) return 0;
      const { rowCount } = await db.query(
        'artifacts.addEvents',
        `INSERT INTO call_events (call_id, at, type, media_ms, data)
         SELECT $1, e.at, e.type, e.media_ms, e.data
         FROM unnest($2::timestamptz[], $3::text[], $4::double precision[], $5::jsonb[]) AS e(at, type, media_ms, data)`,
        [callId, events.map((e) => e.timestamp), events.map((e) => e.type), events.map((e) => e.mediaMs), events.map((e) => JSON.stringify(e.data))],
      );
      return rowCount ?? 0;
    },

    async events(callId, type) {
      if (!isUuid(callId)) return [];
      const { rows } = await db.query<EventRow>(
        'artifacts.events',
        `SELECT ${ISO_MICROS('at')} AS at, type, media_ms, data
         FROM call_events WHERE call_id = $1 AND ($2::text IS NULL OR type = $2) ORDER BY at, id`,
        [callId, type ?? null],
      );
      return rows.map((r) => ({ timestamp: r.at, type: r.type, mediaMs: toNullableNumber(r.media_ms), data: r.data }));
    },

    async deleteIfUnrecorded(callId) {
      if (!isUuid(callId)) return { transcriptEntries: 0, events: 0 };
      const { rows } = await db.query<{ entries: string; events: string }>(
        'artifacts.deleteIfUnrecorded',
        `WITH unrecorded AS (SELECT $1::uuid AS id WHERE NOT EXISTS (SELECT 1 FROM recordings WHERE call_id = $1)),
              entries AS (DELETE FROM call_transcript_entries WHERE call_id IN (SELECT id FROM unrecorded) RETURNING 1),
              events AS (DELETE FROM call_events WHERE call_id IN (SELECT id FROM unrecorded) RETURNING 1)
         SELECT (SELECT count(*) FROM entries) AS entries, (SELECT count(*) FROM events) AS events`,
        [callId],
      );
      return { transcriptEntries: Number(rows[0]?.entries ?? 0), events: Number(rows[0]?.events ?? 0) };
    },
  };
}
