import { randomBytes } from 'node:crypto';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { isUuid, toNullableNumber, type Executor } from './executor.js';
import type {
  CompleteRecordingInput,
  CreateRecordingInput,
  FailRecordingInput,
  JsonObject,
  KeyMode,
  ListRecordingsQuery,
  Recording,
  RecordingPage,
  RecordingSource,
  RecordingStatus,
} from './types.js';

interface RecordingRow {
  id: string;
  recording_sid: string;
  org_id: string;
  call_id: string | null;
  status: RecordingStatus;
  source: RecordingSource;
  channels: number;
  sample_rate: number;
  format: string;
  media_type: string;
  duration_ms: string | null;
  size_bytes: string | null;
  bucket: string;
  object_key: string;
  key_mode: KeyMode;
  key_id: string | null;
  wrapped_key: Buffer | null;
  error_code: string | null;
  owner_gateway: string | null;
  checkpointed_at: Date | null;
  started_at: Date;
  ended_at: Date | null;
  metadata: JsonObject;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = `id, recording_sid, org_id, call_id, status, source, channels, sample_rate, format, media_type,
  duration_ms, size_bytes, bucket, object_key, key_mode, key_id, wrapped_key, error_code, owner_gateway, checkpointed_at, started_at, ended_at,
  metadata, created_at, updated_at`;

function toRecording(row: RecordingRow): Recording {
  return {
    id: row.id,
    recordingSid: row.recording_sid,
    orgId: row.org_id,
    callId: row.call_id,
    status: row.status,
    source: row.source,
    channels: row.channels,
    sampleRate: row.sample_rate,
    format: row.format,
    mediaType: row.media_type,
    durationMs: toNullableNumber(row.duration_ms),
    sizeBytes: toNullableNumber(row.size_bytes),
    bucket: row.bucket,
    objectKey: row.object_key,
    keyMode: row.key_mode,
    keyId: row.key_id,
    wrappedKey: row.wrapped_key,
    errorCode: row.error_code,
    ownerGateway: row.owner_gateway,
    checkpointedAt: row.checkpointed_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    metadata: row.metadata,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const RECORDING_SID = /^CR[0-9a-f]{32}$/;
const METADATA_LIST_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const STATUSES: readonly RecordingStatus[] = ['in_progress', 'uploading', 'interrupted', 'completed', 'failed'];
const SOURCES: readonly RecordingSource[] = ['gateway', 'livekit', 'twilio', 'signalwire', 'elevenlabs'];
export const MAX_PAGE_SIZE = 1000;

function newRecordingSid(): string {
  return `CR${randomBytes(16).toString('hex')}`;
}

/** The SQL condition selecting a recording by uuid or by recording SID, or null when `idOrSid` is neither. */
function identify(idOrSid: string, param: string): string | null {
  if (isUuid(idOrSid)) return `id = ${param}`;
  if (RECORDING_SID.test(idOrSid)) return `recording_sid = ${param}`;
  return null;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function badRequest(message: string, details?: Record<string, unknown>): CallvaultError {
  return new CallvaultError(ErrorCode.BadRequest, message, details ? { details } : {});
}

function isValidDate(value: unknown): value is Date {
  return value instanceof Date && !Number.isNaN(value.getTime());
}

/** The columns a new (in-progress) recording is inserted with, and their placeholders, for every inserting path. */
export const INSERT_COLUMNS = `recording_sid, org_id, call_id, status, source, channels, sample_rate, format,
  media_type, bucket, object_key, key_mode, key_id, wrapped_key, started_at, metadata, owner_gateway`;
export const INSERT_VALUES = `$1, $2, $3, 'in_progress', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb, $16`;
/** How many parameters recordingInsertParams gives: a caller's own parameters start after it. */
export const INSERT_PARAM_COUNT = 16;

/** Parameters $1..$16 for INSERT_COLUMNS, with a fresh recording SID. */
export function recordingInsertParams(input: CreateRecordingInput): unknown[] {
  return [
    newRecordingSid(),
    input.orgId,
    input.callId,
    input.source,
    input.channels,
    input.sampleRate,
    input.format,
    input.mediaType,
    input.bucket,
    input.objectKey,
    input.keyMode,
    input.keyId ?? null,
    input.wrappedKey ? Buffer.from(input.wrappedKey.buffer, input.wrappedKey.byteOffset, input.wrappedKey.byteLength) : null,
    input.startedAt,
    JSON.stringify(input.metadata ?? {}),
    input.ownerGateway ?? null,
  ];
}

export interface RecordingsRepository {
  /** Inserts an in-progress recording with a fresh id and recording SID. */
  create(input: CreateRecordingInput): Promise<Recording>;
  /** in_progress or uploading → completed. Throws NOT_FOUND for unknown ids, CONFLICT if the recording already finished. */
  complete(id: string, result: CompleteRecordingInput): Promise<Recording>;
  /**
   * Recovery from the spool: in_progress, uploading or failed → completed (a failed recording whose spool was kept is
   * finished after all; its error code is cleared). Throws CONFLICT if it completed already.
   */
  completeRecovered(id: string, result: CompleteRecordingInput): Promise<Recording>;
  /** Stores the multipart UploadId the recording streams into (null once it is complete or aborted). */
  setUploadId(id: string, uploadId: string | null): Promise<void>;
  /** The stored multipart UploadId, if any. */
  uploadId(id: string): Promise<string | null>;
  /** Every multipart upload of the recording that may still be open in S3 (attempts not completed nor known aborted). */
  openUploadIds(id: string): Promise<string[]>;
  /** Forgets uploads now completed or aborted. */
  closeUploadIds(id: string, uploadIds: readonly string[]): Promise<void>;
  /** in_progress or interrupted → uploading: the audio is complete in the spool, S3 is behind. A no-op in any other status. */
  markUploading(id: string): Promise<void>;
  /**
   * Recovery on the gateway whose volume holds the spool: it becomes the owner, and an interrupted recording is
   * in progress again (its upload and completion follow). Unfinished rows only; false when none matched.
   */
  claimForRecovery(id: string, gatewayId: string, deadAfterMs: number): Promise<boolean>;
  /** Notes the recording's first spool checkpoint in S3 (a no-op once noted). */
  markCheckpointed(id: string): Promise<void>;
  /** The recording has no usable checkpoints after all: no longer offered for takeover. */
  forgetCheckpoints(id: string): Promise<void>;
  /**
   * Interrupted recordings with checkpoints that `gatewayId` may finish: owned by a gateway whose heartbeat is
   * older than `takeoverAfterMs`, or already by `gatewayId` itself (a takeover cut short), oldest first.
   */
  checkpointedOrphans(gatewayId: string, takeoverAfterMs: number, limit: number): Promise<Array<{ id: string; orgId: string; ownerGateway: string }>>;
  /**
   * Compare-and-set of the owner: interrupted and still owned by `from` → owned by `to`. False when another
   * gateway (or `from`, back on its volume) got there first.
   */
  takeOver(id: string, from: string, to: string): Promise<boolean>;
  /**
   * interrupted → in_progress for the recordings `gatewayId` is still recording live (its heartbeat was late,
   * it never stopped). Returns how many came back.
   */
  resumeLive(gatewayId: string, ids: readonly string[]): Promise<number>;
  /** in_progress, uploading or interrupted → failed. Throws NOT_FOUND for unknown ids, CONFLICT if the recording already finished. */
  fail(id: string, result: FailRecordingInput): Promise<Recording>;
  /** Shallow-merges `patch` into metadata (jsonb `||`); returns the merged metadata. */
  mergeMetadata(id: string, patch: JsonObject): Promise<JsonObject>;
  /**
   * Appends `event` to the metadata array `listName` (created if missing) in one UPDATE, so concurrent
   * appends never lose each other's events.
   */
  appendMetadataEvent(id: string, listName: string, event: unknown): Promise<void>;
  /** By uuid or recording SID; another organisation's recording is not found. */
  get(orgId: string, idOrSid: string): Promise<Recording | null>;
  /** The most recently started completed recording of the call with this CallSid / room SID. */
  latestCompletedForCall(orgId: string, externalId: string): Promise<Recording | null>;
  /** Newest first (startedAt desc, then id desc), with the total across all pages. */
  list(orgId: string, query: ListRecordingsQuery): Promise<RecordingPage>;
  /** Deletes by uuid or recording SID and returns the deleted row, so the caller can remove its object. */
  delete(orgId: string, idOrSid: string): Promise<Recording | null>;
  /**
   * Finished (completed or failed) recordings of organisations with a retention period that ended (or, never
   * ended, started) more than that many days before `now`, oldest first, at most `limit`. Recordings in
   * progress or uploading are never among them.
   */
  expired(now: Date, limit: number): Promise<Recording[]>;
}

export function createRecordingsRepository(db: Executor): RecordingsRepository {
  /** Distinguishes "no such recording" from "not in progress" after a guarded transition matched nothing. */
  async function transitionFailure(id: string, target: RecordingStatus): Promise<CallvaultError> {
    const { rows } = isUuid(id)
      ? await db.query<{ status: RecordingStatus }>('recordings.status', 'SELECT status FROM recordings WHERE id = $1', [id])
      : { rows: [] };
    const current = rows[0]?.status;
    if (current === undefined) {
      return new CallvaultError(ErrorCode.NotFound, 'recording not found', { details: { recordingId: id } });
    }
    return new CallvaultError(ErrorCode.Conflict, `recording is ${current}, cannot become ${target}`, {
      details: { recordingId: id, status: current },
    });
  }

  /** → completed from one of `from`; clears the error code and the upload id, which no longer apply. */
  async function completeFrom(id: string, { durationMs, sizeBytes, endedAt }: CompleteRecordingInput, from: RecordingStatus[]): Promise<Recording> {
    if (!Number.isSafeInteger(durationMs) || durationMs < 0 || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
      throw badRequest('durationMs and sizeBytes are non-negative integers', { durationMs, sizeBytes });
    }
    const { rows } = isUuid(id)
      ? await db.query<RecordingRow>(
          'recordings.complete',
          `UPDATE recordings
           SET status = 'completed', duration_ms = $2, size_bytes = $3, ended_at = $4, error_code = NULL, upload_id = NULL,
               open_upload_ids = array_remove(open_upload_ids, upload_id),
               updated_at = now()
           WHERE id = $1 AND status = ANY($5::text[])
           RETURNING ${COLUMNS}`,
          [id, durationMs, sizeBytes, endedAt, from],
        )
      : { rows: [] };
    if (!rows[0]) throw await transitionFailure(id, 'completed');
    return toRecording(rows[0]);
  }

  return {
    async create(input) {
      if (!isJsonObject(input.metadata ?? {})) throw badRequest('recording metadata must be a JSON object');
      const { rows } = await db.query<RecordingRow>(
        'recordings.create',
        `INSERT INTO recordings (${INSERT_COLUMNS}) VALUES (${INSERT_VALUES}) RETURNING ${COLUMNS}`,
        recordingInsertParams(input),
      );
      return toRecording(rows[0]!);
    },

    // interrupted too: a gateway whose heartbeat was late (a database hiccup) goes on recording and finishes its own.
    complete: (id, result) => completeFrom(id, result, ['in_progress', 'uploading', 'interrupted']),

    // A failed recording whose spool was kept is finished after all: its error code no longer applies.
    completeRecovered: (id, result) => completeFrom(id, result, ['in_progress', 'uploading', 'interrupted', 'failed']),

    async markUploading(id) {
      if (!isUuid(id)) return;
      await db.query(
        'recordings.markUploading',
        `UPDATE recordings SET status = 'uploading', updated_at = now() WHERE id = $1 AND status IN ('in_progress', 'interrupted')`,
        [id],
      );
    },

    async claimForRecovery(id, gatewayId, deadAfterMs) {
      if (!isUuid(id)) return false;
      // Not from a live peer: one that took the recording over from its checkpoints finishes it, not this spool.
      const { rowCount } = await db.query(
        'recordings.claimForRecovery',
        `UPDATE recordings
         SET owner_gateway = $2, status = CASE WHEN status = 'interrupted' THEN 'in_progress' ELSE status END, updated_at = now()
         WHERE id = $1 AND status IN ('in_progress', 'uploading', 'interrupted', 'failed')
           AND (owner_gateway IS NULL OR owner_gateway = $2 OR NOT EXISTS (
             SELECT 1 FROM gateways g WHERE g.id = recordings.owner_gateway AND g.last_heartbeat > now() - make_interval(secs => $3::float8 / 1000)))`,
        [id, gatewayId, deadAfterMs],
      );
      return (rowCount ?? 0) > 0;
    },

    async markCheckpointed(id) {
      if (!isUuid(id)) return;
      await db.query('recordings.markCheckpointed', `UPDATE recordings SET checkpointed_at = now() WHERE id = $1 AND checkpointed_at IS NULL`, [id]);
    },

    async forgetCheckpoints(id) {
      if (!isUuid(id)) return;
      await db.query('recordings.forgetCheckpoints', `UPDATE recordings SET checkpointed_at = NULL WHERE id = $1`, [id]);
    },

    async checkpointedOrphans(gatewayId, takeoverAfterMs, limit) {
      const { rows } = await db.query<{ id: string; org_id: string; owner_gateway: string }>(
        'recordings.checkpointedOrphans',
        `SELECT r.id, r.org_id, r.owner_gateway FROM recordings r
         WHERE r.status = 'interrupted' AND r.checkpointed_at IS NOT NULL AND r.owner_gateway IS NOT NULL
           AND (r.owner_gateway = $1 OR r.owner_gateway IN (
             SELECT g.id FROM gateways g WHERE g.last_heartbeat <= now() - make_interval(secs => $2::float8 / 1000)))
         ORDER BY r.started_at LIMIT $3`,
        [gatewayId, takeoverAfterMs, limit],
      );
      return rows.map((r) => ({ id: r.id, orgId: r.org_id, ownerGateway: r.owner_gateway }));
    },

    async takeOver(id, from, to) {
      if (!isUuid(id)) return false;
      const { rowCount } = await db.query(
        'recordings.takeOver',
        `UPDATE recordings SET owner_gateway = $3, updated_at = now() WHERE id = $1 AND owner_gateway = $2 AND status = 'interrupted'`,
        [id, from, to],
      );
      return (rowCount ?? 0) > 0;
    },

    async resumeLive(gatewayId, ids) {
      const uuids = ids.filter(isUuid);
      if (uuids.length === 0) return 0;
      const { rowCount } = await db.query(
        'recordings.resumeLive',
        `UPDATE recordings SET status = 'in_progress', updated_at = now()
         WHERE owner_gateway = $1 AND status = 'interrupted' AND id = ANY($2::uuid[])`,
        [gatewayId, uuids],
      );
      return rowCount ?? 0;
    },

    async setUploadId(id, uploadId) {
      if (!isUuid(id)) return;
      await db.query(
        'recordings.setUploadId',
        `UPDATE recordings
         SET upload_id = $2,
             open_upload_ids = CASE WHEN $2::text IS NULL THEN open_upload_ids ELSE array_append(array_remove(open_upload_ids, $2::text), $2::text) END,
             updated_at = now()
         WHERE id = $1`,
        [id, uploadId],
      );
    },

    async uploadId(id) {
      if (!isUuid(id)) return null;
      const { rows } = await db.query<{ upload_id: string | null }>('recordings.uploadId', 'SELECT upload_id FROM recordings WHERE id = $1', [id]);
      return rows[0]?.upload_id ?? null;
    },

    async openUploadIds(id) {
      if (!isUuid(id)) return [];
      const { rows } = await db.query<{ open_upload_ids: string[] }>('recordings.openUploadIds', 'SELECT open_upload_ids FROM recordings WHERE id = $1', [id]);
      return rows[0]?.open_upload_ids ?? [];
    },

    async closeUploadIds(id, uploadIds) {
      if (!isUuid(id) || uploadIds.length === 0) return;
      await db.query(
        'recordings.closeUploadIds',
        `UPDATE recordings
         SET open_upload_ids = ARRAY(SELECT u FROM unnest(open_upload_ids) AS u WHERE u <> ALL($2::text[])),
             upload_id = CASE WHEN upload_id = ANY($2::text[]) THEN NULL ELSE upload_id END,
             updated_at = now()
         WHERE id = $1`,
        [id, uploadIds],
      );
    },

    async fail(id, { errorCode, endedAt }) {
      const { rows } = isUuid(id)
        ? await db.query<RecordingRow>(
            'recordings.fail',
            `UPDATE recordings
             SET status = 'failed', error_code = $2, ended_at = $3, updated_at = now()
             WHERE id = $1 AND status IN ('in_progress', 'uploading', 'interrupted')
             RETURNING ${COLUMNS}`,
            [id, errorCode, endedAt],
          )
        : { rows: [] };
      if (!rows[0]) throw await transitionFailure(id, 'failed');
      return toRecording(rows[0]);
    },

    async mergeMetadata(id, patch) {
      if (!isJsonObject(patch)) throw badRequest('a metadata patch must be a JSON object');
      const { rows } = isUuid(id)
        ? await db.query<{ metadata: JsonObject }>(
            'recordings.mergeMetadata',
            `UPDATE recordings SET metadata = metadata || $2::jsonb, updated_at = now()
             WHERE id = $1 RETURNING metadata`,
            [id, JSON.stringify(patch)],
          )
        : { rows: [] };
      if (!rows[0]) throw new CallvaultError(ErrorCode.NotFound, 'recording not found', { details: { recordingId: id } });
      return rows[0].metadata;
    },

    async appendMetadataEvent(id, listName, event) {
      if (!METADATA_LIST_NAME.test(listName)) throw badRequest('invalid metadata list name', { listName });
      const json = JSON.stringify(event);
      if (json === undefined) throw badRequest('a metadata event must be JSON-serialisable', { listName });
      // The whole read-append-write happens inside one UPDATE: PostgreSQL re-evaluates it on the latest row
      // version after a concurrent writer commits, so no append is lost. A non-array value under the name is
      // replaced rather than turned into an object/array mix.
      const { rowCount } = isUuid(id)
        ? await db.query(
            'recordings.appendMetadataEvent',
            `UPDATE recordings SET
               metadata = jsonb_set(
                 metadata,
                 ARRAY[$2::text],
                 CASE WHEN jsonb_typeof(metadata -> $2::text) = 'array' THEN metadata -> $2::text ELSE '[]'::jsonb END
                   || jsonb_build_array($3::jsonb)
               ),
               updated_at = now()
             WHERE id = $1`,
            [id, listName, json],
          )
        : { rowCount: 0 };
      if (!rowCount) throw new CallvaultError(ErrorCode.NotFound, 'recording not found', { details: { recordingId: id } });
    },

    async get(orgId, idOrSid) {
      const condition = identify(idOrSid, '$2');
      if (!condition) return null;
      const { rows } = await db.query<RecordingRow>(
        'recordings.get',
        `SELECT ${COLUMNS} FROM recordings WHERE org_id = $1 AND ${condition}`,
        [orgId, idOrSid],
      );
      return rows[0] ? toRecording(rows[0]) : null;
    },

    async latestCompletedForCall(orgId, externalId) {
      const { rows } = await db.query<RecordingRow>(
        'recordings.latestCompletedForCall',
        `SELECT ${COLUMNS} FROM recordings
         WHERE org_id = $1 AND status = 'completed'
           AND call_id IN (SELECT id FROM calls WHERE org_id = $1 AND external_id = $2)
         ORDER BY started_at DESC, id DESC LIMIT 1`,
        [orgId, externalId],
      );
      return rows[0] ? toRecording(rows[0]) : null;
    },

    async list(orgId, query) {
      const { page, limit } = query;
      if (!Number.isSafeInteger(page) || page < 0) throw badRequest('page is an integer from 0', { page });
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        throw badRequest(`limit is an integer from 1 to ${MAX_PAGE_SIZE}`, { limit });
      }
      if (query.status !== undefined && !STATUSES.includes(query.status)) {
        throw badRequest('unknown recording status', { status: query.status });
      }
      if (query.source !== undefined && !SOURCES.includes(query.source)) {
        throw badRequest('unknown recording source', { source: query.source });
      }
      for (const bound of ['fromDate', 'toDate'] as const) {
        if (query[bound] !== undefined && !isValidDate(query[bound])) throw badRequest(`${bound} is not a valid date`);
      }

      const params: unknown[] = [orgId];
      const conditions = ['org_id = $1'];
      const bind = (value: unknown): string => {
        params.push(value);
        return `$${params.length}`;
      };
      if (query.callSid !== undefined) {
        conditions.push(`call_id IN (SELECT id FROM calls WHERE org_id = $1 AND external_id = ${bind(query.callSid)})`);
      }
      if (query.userId !== undefined) {
        conditions.push(`call_id IN (SELECT id FROM calls WHERE org_id = $1 AND metadata ? 'userId' AND metadata ->> 'userId' = ${bind(query.userId)})`);
      }
      if (query.status !== undefined) conditions.push(`status = ${bind(query.status)}`);
      if (query.source !== undefined) conditions.push(`source = ${bind(query.source)}`);
      if (query.fromDate !== undefined) conditions.push(`started_at >= ${bind(query.fromDate)}`);
      if (query.toDate !== undefined) conditions.push(`started_at < ${bind(query.toDate)}`);
      const where = conditions.join(' AND ');
      const filterParams = [...params];
      const pageClause = `LIMIT ${bind(limit)} OFFSET ${bind(page * limit)}`;

      const [counted, listed] = await Promise.all([
        db.query<{ total: string }>('recordings.list', `SELECT count(*) AS total FROM recordings WHERE ${where}`, filterParams),
        db.query<RecordingRow>(
          'recordings.list',
          `SELECT ${COLUMNS} FROM recordings WHERE ${where} ORDER BY started_at DESC, id DESC ${pageClause}`,
          params,
        ),
      ]);
      return { total: Number(counted.rows[0]!.total), rows: listed.rows.map(toRecording) };
    },

    async delete(orgId, idOrSid) {
      const condition = identify(idOrSid, '$2');
      if (!condition) return null;
      const { rows } = await db.query<RecordingRow>(
        'recordings.delete',
        `DELETE FROM recordings WHERE org_id = $1 AND ${condition} RETURNING ${COLUMNS}`,
        [orgId, idOrSid],
      );
      return rows[0] ? toRecording(rows[0]) : null;
    },

    async expired(now, limit) {
      // Per organisation with a period, through the partial index on (org_id, COALESCE(ended_at, started_at)).
      const { rows } = await db.query<RecordingRow>(
        'recordings.expired',
        `SELECT r.* FROM organisations o
         CROSS JOIN LATERAL (
           SELECT ${COLUMNS}, COALESCE(ended_at, started_at) AS finished_at FROM recordings
           WHERE org_id = o.id AND status IN ('completed', 'failed')
             AND COALESCE(ended_at, started_at) < $1::timestamptz - make_interval(days => o.retention_days)
           ORDER BY COALESCE(ended_at, started_at), id
           LIMIT $2
         ) r
         WHERE o.retention_days IS NOT NULL
         ORDER BY r.finished_at, r.id
         LIMIT $2`,
        [now, limit],
      );
      return rows.map(toRecording);
    },
  };
}
