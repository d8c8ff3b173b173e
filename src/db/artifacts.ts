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
  /**
   * The text sealed by the gateway's artifact vault (then `text` is stored as ''), and the master key id that
   * sealed it. Writers leave both out: the vault fills them in.
   */
  sealed?: { keyId: string; bytes: Uint8Array };
}

export interface TranscriptEntry extends TranscriptEntryInput {
  /** ISO 8601 UTC with microseconds, e.g. 2026-12-01T14:30:22.123456Z. */
  timestamp: string;
  /** The staging row's id (entries read back from a sealed object have none). */
  rowId?: string;
}

export interface CallEventInput {
  timestamp: string;
  type: string;
  /** Position on the call's media timeline, in ms, when the poster knows it. */
  mediaMs: number | null;
  data: JsonObject;
  /** The data sealed by the gateway's artifact vault (then `data` is stored as {}); writers leave it out. */
  sealed?: { keyId: string; bytes: Uint8Array };
}

export interface CallEvent extends CallEventInput {
  /** The staging row's id (events read back from a sealed object have none). */
  rowId?: string;
}

export type ArtifactKind = 'transcript' | 'events' | 'metadata';

/** One of a call's sealed documents: where its container object is and, in server key mode, its wrapped data key. */
export interface SealedArtifact {
  kind: ArtifactKind;
  bucket: string;
  objectKey: string;
  keyMode: 'server' | 'client';
  keyId: string | null;
  wrappedKey: Uint8Array | null;
  sizeBytes: number;
  sealedAt: Date;
}

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
  /** The call's organisation and whether it has ended (null: no such call). */
  callOf(callId: string): Promise<{ orgId: string; ended: boolean } | null>;
  /** The call's sealed documents (none until its first seal). */
  sealed(callId: string): Promise<SealedArtifact[]>;
  /**
   * Points the call at freshly sealed documents and drops the staged rows they include (ids up to the given
   * ones), in one transaction. Returns the documents they replace, whose objects the caller then deletes.
   */
  commitSeal(callId: string, objects: readonly Omit<SealedArtifact, 'sealedAt'>[], sealedUpTo: { entryId: string | null; eventId: string | null }): Promise<SealedArtifact[]>;
  /** Removes the call's staged rows and sealed pointers (after their objects were deleted). */
  deleteAll(callId: string): Promise<void>;
}

/** ISO 8601 UTC with microseconds, computed by PostgreSQL from the stored timestamptz. */
const ISO_MICROS = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const bytea = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

interface EntryRow {
  sealed: Buffer | null;
  key_id: string | null;
  id: string;
  at: string;
  channel: TranscriptChannel;
  kind: TranscriptKind;
  text: string;
  confidence: number | null;
  duration_ms: number | null;
}

interface EventRow {
  sealed: Buffer | null;
  key_id: string | null;
  id: string;
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
        `INSERT INTO call_transcript_entries (call_id, at, channel, kind, text, confidence, duration_ms, sealed, key_id)
         SELECT $1, e.at, e.channel, e.kind, e.text, e.confidence, e.duration_ms, e.sealed, e.key_id
         FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::double precision[], $7::double precision[], $8::bytea[], $9::text[])
           AS e(at, channel, kind, text, confidence, duration_ms, sealed, key_id)`,
        [
          callId,
          entries.map((e) => e.timestamp),
          entries.map((e) => e.channel),
          entries.map((e) => e.type),
          entries.map((e) => (e.sealed ? '' : e.text)),
          entries.map((e) => e.confidence),
          entries.map((e) => e.durationMs),
          entries.map((e) => (e.sealed ? bytea(e.sealed.bytes) : null)),
          entries.map((e) => e.sealed?.keyId ?? null),
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
        `SELECT id::text AS id, ${ISO_MICROS('at')} AS at, channel, kind, text, confidence, duration_ms, sealed, key_id
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
        rowId: r.id,
        ...(r.sealed && r.key_id ? { sealed: { keyId: r.key_id, bytes: new Uint8Array(r.sealed) } } : {}),
      }));
    },

    async addEvents(callId, events) {
      if (!isUuid(callId) || events.length === 0) return 0;
      const { rowCount } = await db.query(
        'artifacts.addEvents',
        `INSERT INTO call_events (call_id, at, type, media_ms, data, sealed, key_id)
         SELECT $1, e.at, e.type, e.media_ms, e.data, e.sealed, e.key_id
         FROM unnest($2::timestamptz[], $3::text[], $4::double precision[], $5::jsonb[], $6::bytea[], $7::text[]) AS e(at, type, media_ms, data, sealed, key_id)`,
        [
          callId,
          events.map((e) => e.timestamp),
          events.map((e) => e.type),
          events.map((e) => e.mediaMs),
          events.map((e) => (e.sealed ? '{}' : JSON.stringify(e.data))),
          events.map((e) => (e.sealed ? bytea(e.sealed.bytes) : null)),
          events.map((e) => e.sealed?.keyId ?? null),
        ],
      );
      return rowCount ?? 0;
    },

    async events(callId, type) {
      if (!isUuid(callId)) return [];
      const { rows } = await db.query<EventRow>(
        'artifacts.events',
        `SELECT id::text AS id, ${ISO_MICROS('at')} AS at, type, media_ms, data, sealed, key_id
         FROM call_events WHERE call_id = $1 AND ($2::text IS NULL OR type = $2) ORDER BY at, id`,
        [callId, type ?? null],
      );
      return rows.map((r) => ({
        timestamp: r.at,
        type: r.type,
        mediaMs: toNullableNumber(r.media_ms),
        data: r.data,
        rowId: r.id,
        ...(r.sealed && r.key_id ? { sealed: { keyId: r.key_id, bytes: new Uint8Array(r.sealed) } } : {}),
      }));
    },

    async callOf(callId) {
      if (!isUuid(callId)) return null;
      const { rows } = await db.query<{ org_id: string; ended: boolean }>('artifacts.callOf', 'SELECT org_id, ended_at IS NOT NULL AS ended FROM calls WHERE id = $1', [callId]);
      const row = rows[0];
      return row ? { orgId: row.org_id, ended: row.ended } : null;
    },

    async sealed(callId) {
      if (!isUuid(callId)) return [];
      const { rows } = await db.query<SealedRow>(
        'artifacts.sealed',
        `SELECT kind, bucket, object_key, key_mode, key_id, wrapped_key, size_bytes, sealed_at FROM call_artifact_objects WHERE call_id = $1 ORDER BY kind`,
        [callId],
      );
      return rows.map(sealedOf);
    },

    async commitSeal(callId, objects, upTo) {
      // One statement, so atomic: every CTE sees the rows as they were before it (prev is what is replaced).
      const { rows } = await db.query<SealedRow>(
        'artifacts.commitSeal',
        `WITH input AS (
           SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bigint[])
             AS i(kind, bucket, object_key, key_mode, key_id, wrapped_key, size_bytes)
         ), prev AS (
           SELECT o.kind, o.bucket, o.object_key, o.key_mode, o.key_id, o.wrapped_key, o.size_bytes, o.sealed_at
           FROM call_artifact_objects o WHERE o.call_id = $1 AND o.kind IN (SELECT kind FROM input)
         ), put AS (
           INSERT INTO call_artifact_objects (call_id, kind, bucket, object_key, key_mode, key_id, wrapped_key, size_bytes, sealed_at)
           SELECT $1, kind, bucket, object_key, key_mode, key_id, wrapped_key, size_bytes, now() FROM input
           ON CONFLICT (call_id, kind) DO UPDATE SET bucket = EXCLUDED.bucket, object_key = EXCLUDED.object_key, key_mode = EXCLUDED.key_mode,
             key_id = EXCLUDED.key_id, wrapped_key = EXCLUDED.wrapped_key, size_bytes = EXCLUDED.size_bytes, sealed_at = EXCLUDED.sealed_at
           RETURNING 1
         ), sealed_entries AS (
           DELETE FROM call_transcript_entries WHERE call_id = $1 AND $9::bigint IS NOT NULL AND id <= $9::bigint RETURNING 1
         ), sealed_events AS (
           DELETE FROM call_events WHERE call_id = $1 AND $10::bigint IS NOT NULL AND id <= $10::bigint RETURNING 1
         )
         SELECT * FROM prev WHERE object_key NOT IN (SELECT object_key FROM input)`,
        [
          callId,
          objects.map((o) => o.kind),
          objects.map((o) => o.bucket),
          objects.map((o) => o.objectKey),
          objects.map((o) => o.keyMode),
          objects.map((o) => o.keyId),
          objects.map((o) => (o.wrappedKey ? Buffer.from(o.wrappedKey.buffer, o.wrappedKey.byteOffset, o.wrappedKey.byteLength) : null)),
          objects.map((o) => o.sizeBytes),
          upTo.entryId,
          upTo.eventId,
        ],
      );
      return rows.map(sealedOf);
    },

    async deleteAll(callId) {
      if (!isUuid(callId)) return;
      await db.query(
        'artifacts.deleteAll',
        `WITH e AS (DELETE FROM call_transcript_entries WHERE call_id = $1 RETURNING 1),
              v AS (DELETE FROM call_events WHERE call_id = $1 RETURNING 1)
         DELETE FROM call_artifact_objects WHERE call_id = $1`,
        [callId],
      );
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

interface SealedRow {
  kind: ArtifactKind;
  bucket: string;
  object_key: string;
  key_mode: 'server' | 'client';
  key_id: string | null;
  wrapped_key: Buffer | null;
  size_bytes: string | number;
  sealed_at: Date;
}

function sealedOf(r: SealedRow): SealedArtifact {
  return {
    kind: r.kind,
    bucket: r.bucket,
    objectKey: r.object_key,
    keyMode: r.key_mode,
    keyId: r.key_id,
    wrappedKey: r.wrapped_key ? new Uint8Array(r.wrapped_key) : null,
    sizeBytes: Number(r.size_bytes),
    sealedAt: r.sealed_at,
  };
}
