/**
 * Recordings made elsewhere (Twilio's recorder, ElevenLabs) and the bookkeeping around them: the
 * idempotent claim on their external id, the options a Twilio-side recording was requested with, and the
 * calls the poller still has to look at.
 */
import type { Executor } from './executor.js';
import { INSERT_COLUMNS, INSERT_PARAM_COUNT, INSERT_VALUES, recordingInsertParams } from './recordings.js';
import type { Call, CreateRecordingInput, JsonObject } from './types.js';

export interface TwilioRecordingRequest {
  orgId: string;
  twilioRecordingSid: string;
  callSid: string;
  accountSid: string;
  stereo: boolean | null;
  keyId: string | null;
  sealedKey: Buffer | null;
}

export interface ClaimedImport {
  id: string;
  recordingSid: string;
}

export interface PollCandidate {
  callId: string;
  callSid: string;
  accountSid: string | null;
}

export interface CallSummary {
  id: string;
  externalId: string;
  source: Call['source'];
  status: Call['status'];
  startedAt: Date;
  endedAt: Date | null;
  metadata: JsonObject;
}

export interface ImportsRepository {
  /**
   * Inserts an in-progress recording carrying `externalSid`, or returns null when that external recording is
   * already claimed in the organisation (by a concurrent duplicate, or an earlier delivery).
   */
  claim(input: CreateRecordingInput & { externalSid: string }): Promise<ClaimedImport | null>;
  /** Removes a claim whose import failed, so the sender's retry can claim it again. */
  release(id: string): Promise<void>;
  /** The recording (id, status) already holding this external recording, if any. */
  findByExternalSid(orgId: string, source: string, externalSid: string): Promise<{ id: string; recordingSid: string; status: string } | null>;
  saveTwilioRequest(request: TwilioRecordingRequest): Promise<void>;
  twilioRequest(orgId: string, twilioRecordingSid: string): Promise<TwilioRecordingRequest | null>;
  twilioRequestsOfCall(orgId: string, callSid: string): Promise<TwilioRecordingRequest[]>;
  deleteTwilioRequest(orgId: string, twilioRecordingSid: string): Promise<void>;
  /** Twilio (or SignalWire) calls started since `since` that hold no recording of that carrier's side yet. */
  pollCandidates(orgId: string, since: Date, limit: number, carrier?: 'twilio' | 'signalwire'): Promise<PollCandidate[]>;
  /** The organisation's latest call since `since` tagged with this called number that has no recording at all. */
  latestUnrecordedCallTo(orgId: string, calledNumber: string, since: Date): Promise<Call | null>;
  /** The calls with these ids in the organisation (for showing a recording's call). */
  callsByIds(orgId: string, ids: readonly string[]): Promise<Map<string, CallSummary>>;
}

interface RequestRow {
  org_id: string;
  twilio_recording_sid: string;
  call_sid: string;
  account_sid: string;
  stereo: boolean | null;
  key_id: string | null;
  sealed_key: Buffer | null;
}

function toRequest(row: RequestRow): TwilioRecordingRequest {
  return {
    orgId: row.org_id,
    twilioRecordingSid: row.twilio_recording_sid,
    callSid: row.call_sid,
    accountSid: row.account_sid,
    stereo: row.stereo,
    keyId: row.key_id,
    sealedKey: row.sealed_key,
  };
}

const REQUEST_COLUMNS = 'org_id, twilio_recording_sid, call_sid, account_sid, stereo, key_id, sealed_key';

export function createImportsRepository(db: Executor): ImportsRepository {
  return {
    async claim(input) {
      const { rows } = await db.query<{ id: string; recording_sid: string }>(
        'imports.claim',
        `INSERT INTO recordings (${INSERT_COLUMNS}, external_sid) VALUES (${INSERT_VALUES}, $${INSERT_PARAM_COUNT + 1})
         ON CONFLICT (org_id, source, external_sid) WHERE external_sid IS NOT NULL DO NOTHING
         RETURNING id, recording_sid`,
        [...recordingInsertParams(input), input.externalSid],
      );
      return rows[0] ? { id: rows[0].id, recordingSid: rows[0].recording_sid } : null;
    },

    async release(id) {
      await db.query('imports.release', `DELETE FROM recordings WHERE id = $1 AND status <> 'completed'`, [id]);
    },

    async findByExternalSid(orgId, source, externalSid) {
      const { rows } = await db.query<{ id: string; recording_sid: string; status: string }>(
        'imports.findByExternalSid',
        `SELECT id, recording_sid, status FROM recordings WHERE org_id = $1 AND source = $2 AND external_sid = $3`,
        [orgId, source, externalSid],
      );
      return rows[0] ? { id: rows[0].id, recordingSid: rows[0].recording_sid, status: rows[0].status } : null;
    },

    async saveTwilioRequest(r) {
      await db.query(
        'imports.saveTwilioRequest',
        `INSERT INTO twilio_recording_requests (${REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org_id, twilio_recording_sid) DO NOTHING`,
        [r.orgId, r.twilioRecordingSid, r.callSid, r.accountSid, r.stereo, r.keyId, r.sealedKey],
      );
    },

    async twilioRequest(orgId, sid) {
      const { rows } = await db.query<RequestRow>(
        'imports.twilioRequest',
        `SELECT ${REQUEST_COLUMNS} FROM twilio_recording_requests WHERE org_id = $1 AND twilio_recording_sid = $2`,
        [orgId, sid],
      );
      return rows[0] ? toRequest(rows[0]) : null;
    },

    async twilioRequestsOfCall(orgId, callSid) {
      const { rows } = await db.query<RequestRow>(
        'imports.twilioRequestsOfCall',
        `SELECT ${REQUEST_COLUMNS} FROM twilio_recording_requests WHERE org_id = $1 AND call_sid = $2 ORDER BY created_at`,
        [orgId, callSid],
      );
      return rows.map(toRequest);
    },

    async deleteTwilioRequest(orgId, sid) {
      await db.query('imports.deleteTwilioRequest', 'DELETE FROM twilio_recording_requests WHERE org_id = $1 AND twilio_recording_sid = $2', [
        orgId,
        sid,
      ]);
    },

    async pollCandidates(orgId, since, limit, carrier = 'twilio') {
      const { rows } = await db.query<{ id: string; external_id: string; account_sid: string | null }>(
        'imports.pollCandidates',
        `SELECT c.id, c.external_id, c.metadata ->> 'accountSid' AS account_sid FROM calls c
         WHERE c.org_id = $1 AND c.source = $4 AND c.started_at >= $2
           AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.org_id = $1 AND r.call_id = c.id AND r.source = $4)
         ORDER BY c.started_at DESC, c.id DESC LIMIT $3`,
        [orgId, since, limit, carrier],
      );
      return rows.map((r) => ({ callId: r.id, callSid: r.external_id, accountSid: r.account_sid }));
    },

    async latestUnrecordedCallTo(orgId, calledNumber, since) {
      const { rows } = await db.query<{
        id: string;
        org_id: string;
        source: Call['source'];
        external_id: string;
        status: Call['status'];
        started_at: Date;
        ended_at: Date | null;
        metadata: JsonObject;
        owner_gateway: string | null;
        created_at: Date;
        updated_at: Date;
      }>(
        'imports.latestUnrecordedCallTo',
        `SELECT c.id, c.org_id, c.source, c.external_id, c.status, c.started_at, c.ended_at, c.metadata, c.owner_gateway, c.created_at, c.updated_at
         FROM calls c
         WHERE c.org_id = $1 AND c.metadata ->> 'calledNumber' = $2 AND c.started_at >= $3
           AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.org_id = $1 AND r.call_id = c.id)
         ORDER BY c.started_at DESC, c.id DESC LIMIT 1`,
        [orgId, calledNumber, since],
      );
      const r = rows[0];
      if (!r) return null;
      return {
        id: r.id,
        orgId: r.org_id,
        source: r.source,
        externalId: r.external_id,
        status: r.status,
        startedAt: r.started_at,
        endedAt: r.ended_at,
        metadata: r.metadata,
        ownerGateway: r.owner_gateway,
        createdAt: r.created_at,
        updatedAt: r.updated_at,
      };
    },

    async callsByIds(orgId, ids) {
      const out = new Map<string, CallSummary>();
      if (ids.length === 0) return out;
      const { rows } = await db.query<{
        id: string;
        external_id: string;
        source: Call['source'];
        status: Call['status'];
        started_at: Date;
        ended_at: Date | null;
        metadata: JsonObject;
      }>(
        'imports.callsByIds',
        'SELECT id, external_id, source, status, started_at, ended_at, metadata FROM calls WHERE org_id = $1 AND id = ANY($2::uuid[])',
        [orgId, [...new Set(ids)]],
      );
      for (const r of rows) {
        out.set(r.id, { id: r.id, externalId: r.external_id, source: r.source, status: r.status, startedAt: r.started_at, endedAt: r.ended_at, metadata: r.metadata });
      }
      return out;
    },
  };
}
