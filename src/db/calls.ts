import { CallvaultError, ErrorCode } from '../errors/index.js';
import { isUuid, type Executor } from './executor.js';
import type { Call, CallSource, CallStatus, JsonObject, UpsertActiveCallInput } from './types.js';

interface CallRow {
  id: string;
  org_id: string;
  source: CallSource;
  external_id: string;
  status: CallStatus;
  started_at: Date;
  ended_at: Date | null;
  metadata: JsonObject;
  owner_gateway: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, org_id, source, external_id, status, started_at, ended_at, metadata, owner_gateway, created_at, updated_at';

function toCall(row: CallRow): Call {
  return {
    id: row.id,
    orgId: row.org_id,
    source: row.source,
    externalId: row.external_id,
    status: row.status,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    metadata: row.metadata,
    ownerGateway: row.owner_gateway,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export interface CallsRepository {
  /**
   * Creates the call, or re-activates the existing one with the same (org, source, external id) — a
   * reconnecting stream continues its call. The earliest start is kept and metadata is merged.
   */
  upsertActive(input: UpsertActiveCallInput): Promise<Call>;
  /**
   * Registers a media stream of the call (creating the call row, active, if it has none): each stream id is
   * accepted once per call, and the first stream registered is the call's primary. Null when this stream id
   * was registered before (a replayed stream). An existing row's status is left alone.
   */
  claimStream(input: UpsertActiveCallInput & { streamSid: string }): Promise<{ call: Call; primary: boolean } | null>;
  /** Marks the call ended. Ending an ended call keeps its first end time. Throws NOT_FOUND for unknown ids. */
  end(callId: string, endedAt: Date): Promise<Call>;
  /** The most recently updated call with this CallSid / room SID in the organisation. */
  getByExternalId(orgId: string, externalId: string, source?: CallSource): Promise<Call | null>;
  get(orgId: string, id: string): Promise<Call | null>;
  /** Sets these metadata keys (overwriting). A no-op for unknown ids. */
  mergeMetadata(callId: string, patch: JsonObject): Promise<void>;
  /** Adds these metadata keys where the call has none yet (a tag set first stays). */
  tagIfUnset(callId: string, tags: JsonObject): Promise<void>;
}

export function createCallsRepository(db: Executor): CallsRepository {
  return {
    async upsertActive({ orgId, source, externalId, startedAt, metadata, ownerGateway }) {
      const { rows } = await db.query<CallRow>(
        'calls.upsertActive',
        `INSERT INTO calls (org_id, source, external_id, status, started_at, metadata, owner_gateway)
         VALUES ($1, $2, $3, 'active', $4, $5::jsonb, $6)
         ON CONFLICT (org_id, source, external_id) DO UPDATE SET
           status = 'active',
           ended_at = NULL,
           started_at = LEAST(calls.started_at, EXCLUDED.started_at),
           metadata = calls.metadata || EXCLUDED.metadata,
           owner_gateway = COALESCE(EXCLUDED.owner_gateway, calls.owner_gateway),
           updated_at = now()
         RETURNING ${COLUMNS}`,
        [orgId, source, externalId, startedAt, JSON.stringify(metadata ?? {}), ownerGateway ?? null],
      );
      return toCall(rows[0]!);
    },

    async claimStream({ orgId, source, externalId, startedAt, metadata, streamSid }) {
      const { rows } = await db.query<CallRow>(
        'calls.claimStream',
        `INSERT INTO calls (org_id, source, external_id, status, started_at, metadata)
         VALUES ($1, $2, $3, 'active', $4,
                 $5::jsonb || jsonb_build_object('primaryStreamSid', $6::text, 'streamSids', jsonb_build_array($6::text)))
         ON CONFLICT (org_id, source, external_id) DO UPDATE SET
           metadata = calls.metadata || jsonb_build_object(
             'primaryStreamSid', COALESCE(calls.metadata->'primaryStreamSid', to_jsonb($6::text)),
             'streamSids', COALESCE(calls.metadata->'streamSids', '[]'::jsonb) || jsonb_build_array($6::text)),
           updated_at = now()
         WHERE NOT (COALESCE(calls.metadata->'streamSids', '[]'::jsonb) ? $6::text)
         RETURNING ${COLUMNS}`,
        [orgId, source, externalId, startedAt, JSON.stringify(metadata ?? {}), streamSid],
      );
      if (!rows[0]) return null;
      const call = toCall(rows[0]);
      return { call, primary: call.metadata['primaryStreamSid'] === streamSid };
    },

    async end(callId, endedAt) {
      const { rows } = isUuid(callId)
        ? await db.query<CallRow>(
            'calls.end',
            `UPDATE calls SET
               status = 'ended',
               ended_at = CASE WHEN status = 'ended' THEN ended_at ELSE $2 END,
               updated_at = now()
             WHERE id = $1
             RETURNING ${COLUMNS}`,
            [callId, endedAt],
          )
        : { rows: [] };
      if (!rows[0]) throw new CallvaultError(ErrorCode.NotFound, 'call not found', { details: { callId } });
      return toCall(rows[0]);
    },

    async getByExternalId(orgId, externalId, source) {
      const { rows } = await db.query<CallRow>(
        'calls.getByExternalId',
        `SELECT ${COLUMNS} FROM calls
         WHERE org_id = $1 AND external_id = $2 AND ($3::text IS NULL OR source = $3)
         ORDER BY updated_at DESC, id DESC LIMIT 1`,
        [orgId, externalId, source ?? null],
      );
      return rows[0] ? toCall(rows[0]) : null;
    },

    async mergeMetadata(callId, patch) {
      if (!isUuid(callId)) return;
      await db.query('calls.mergeMetadata', `UPDATE calls SET metadata = metadata || $2::jsonb, updated_at = now() WHERE id = $1`, [callId, JSON.stringify(patch)]);
    },

    async tagIfUnset(callId, tags) {
      if (!isUuid(callId)) return;
      await db.query('calls.tagIfUnset', `UPDATE calls SET metadata = $2::jsonb || metadata, updated_at = now() WHERE id = $1`, [callId, JSON.stringify(tags)]);
    },

    async get(orgId, id) {
      if (!isUuid(id)) return null;
      const { rows } = await db.query<CallRow>(
        'calls.get',
        `SELECT ${COLUMNS} FROM calls WHERE org_id = $1 AND id = $2`,
        [orgId, id],
      );
      return rows[0] ? toCall(rows[0]) : null;
    },
  };
}
