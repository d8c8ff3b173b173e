/**
 * Transcription jobs of recordings; every change of a job's status sets its recording's metadata too, in the
 * same statement. One row per recording: a new request replaces a failed job and is refused
 * while one is queued, in progress or completed. Runners claim work with a lease
 * (`FOR UPDATE SKIP LOCKED`, so several gateways never take the same job); a job whose lease ran out
 * without an answer (its gateway stopped or died mid-way) is claimed again.
 */
import { isUuid, toNumber, type Executor } from './executor.js';
import type { JsonObject } from './types.js';
import type { TranscriptEntryInput } from './artifacts.js';

export type TranscriptionStatus = 'queued' | 'in_progress' | 'completed' | 'failed';

export interface TranscriptionRequest {
  engine: string;
  language: string;
  diarization: boolean;
}

export interface TranscriptionJob extends TranscriptionRequest {
  id: string;
  recordingId: string;
  orgId: string;
  status: TranscriptionStatus;
  attempts: number;
  leaseUntil: Date | null;
  errorCode: string | null;
  errorMessage: string | null;
  /** The engine's result once completed (segments per channel, as the transcription runner stores it). */
  result: JsonObject | null;
  requestedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface TranscriptionsRepository {
  /**
   * Queues a job, replacing a failed one; null when the recording has one queued, in progress or completed
   * (nothing changed: a completed transcription is final, its entries are in the call's transcript).
   */
  request(orgId: string, recordingId: string, request: TranscriptionRequest): Promise<TranscriptionJob | null>;
  get(orgId: string, recordingId: string): Promise<TranscriptionJob | null>;
  /** The oldest queued job, or an in-progress one whose lease has run out, now in progress with a new lease. */
  claim(leaseMs: number): Promise<TranscriptionJob | null>;
  /** Extends the lease of a job still in progress; false once it is no longer (deleted, finished). */
  renew(id: string, leaseMs: number): Promise<boolean>;
  /**
   * Completes a job still in progress and, in the same statement, appends `entries` to its call's transcript
   * (all or nothing: a job run again after a crash never adds them twice). False when it was not in progress.
   */
  complete(id: string, result: JsonObject, transcript?: { callId: string; entries: readonly TranscriptEntryInput[] }): Promise<boolean>;
  fail(id: string, code: string, message: string): Promise<boolean>;
}

interface JobRow {
  id: string;
  recording_id: string;
  org_id: string;
  status: TranscriptionStatus;
  engine: string;
  language: string;
  diarization: boolean;
  attempts: number | string;
  lease_until: Date | null;
  error_code: string | null;
  error_message: string | null;
  result: JsonObject | null;
  requested_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

const COLUMNS = `id, recording_id, org_id, status, engine, language, diarization, attempts, lease_until, error_code,
  error_message, result, requested_at, started_at, finished_at`;

/**
 * The recording's `metadata.transcriptionRequested` / `transcriptionStatus` (API spelling), set in the same
 * statement as the job's own status so the two never disagree, whoever changes them concurrently.
 */
const markRecording = (status: string, jobs = 'done') => `marked AS (
  UPDATE recordings SET metadata = metadata || jsonb_build_object('transcriptionRequested', true, 'transcriptionStatus', '${status}'::text),
    updated_at = now()
  WHERE id IN (SELECT recording_id FROM ${jobs}))`;

function toJob(r: JobRow): TranscriptionJob {
  return {
    id: r.id,
    recordingId: r.recording_id,
    orgId: r.org_id,
    status: r.status,
    engine: r.engine,
    language: r.language,
    diarization: r.diarization,
    attempts: toNumber(r.attempts),
    leaseUntil: r.lease_until,
    errorCode: r.error_code,
    errorMessage: r.error_message,
    result: r.result,
    requestedAt: r.requested_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
}

export function createTranscriptionsRepository(db: Executor): TranscriptionsRepository {
  return {
    async request(orgId, recordingId, request) {
      if (!isUuid(recordingId)) return null;
      const { rows } = await db.query<JobRow>(
        'transcriptions.request',
        `WITH done AS (
           INSERT INTO recording_transcriptions (recording_id, org_id, status, engine, language, diarization)
           SELECT r.id, r.org_id, 'queued', $3, $4, $5 FROM recordings r WHERE r.id = $1 AND r.org_id = $2
           ON CONFLICT (recording_id) DO UPDATE SET status = 'queued', engine = EXCLUDED.engine, language = EXCLUDED.language,
             diarization = EXCLUDED.diarization, attempts = 0, lease_until = NULL, error_code = NULL, error_message = NULL,
             result = NULL, requested_at = now(), started_at = NULL, finished_at = NULL
           WHERE recording_transcriptions.status = 'failed'
           RETURNING ${COLUMNS}),
         ${markRecording('queued')}
         SELECT * FROM done`,
        [recordingId, orgId, request.engine, request.language, request.diarization],
      );
      return rows[0] ? toJob(rows[0]) : null;
    },

    async get(orgId, recordingId) {
      if (!isUuid(recordingId)) return null;
      const { rows } = await db.query<JobRow>(
        'transcriptions.get',
        `SELECT ${COLUMNS} FROM recording_transcriptions WHERE recording_id = $1 AND org_id = $2`,
        [recordingId, orgId],
      );
      return rows[0] ? toJob(rows[0]) : null;
    },

    async claim(leaseMs) {
      const { rows } = await db.query<JobRow>(
        'transcriptions.claim',
        `WITH done AS (
           UPDATE recording_transcriptions SET status = 'in_progress', attempts = attempts + 1,
             lease_until = now() + make_interval(secs => $1::double precision / 1000), started_at = COALESCE(started_at, now())
           WHERE id = (
             SELECT id FROM recording_transcriptions
             WHERE status = 'queued' OR (status = 'in_progress' AND lease_until < now())
             ORDER BY requested_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING ${COLUMNS}),
         ${markRecording('in-progress')}
         SELECT * FROM done`,
        [leaseMs],
      );
      return rows[0] ? toJob(rows[0]) : null;
    },

    async renew(id, leaseMs) {
      const { rowCount } = await db.query(
        'transcriptions.renew',
        `UPDATE recording_transcriptions SET lease_until = now() + make_interval(secs => $2::double precision / 1000)
         WHERE id = $1 AND status = 'in_progress'`,
        [id, leaseMs],
      );
      return (rowCount ?? 0) > 0;
    },

    async complete(id, result, transcript) {
      const entries = transcript && isUuid(transcript.callId) ? transcript.entries : [];
      const { rows } = await db.query<{ done: string | number }>(
        'transcriptions.complete',
        `WITH done AS (
           UPDATE recording_transcriptions SET status = 'completed', result = $2::jsonb, lease_until = NULL, finished_at = now()
           WHERE id = $1 AND status = 'in_progress' RETURNING id, recording_id),
         ${markRecording('completed')},
         added AS (
           INSERT INTO call_transcript_entries (call_id, at, channel, kind, text, confidence, duration_ms)
           SELECT $3::uuid, e.at, e.channel, e.kind, e.text, e.confidence, e.duration_ms
           FROM unnest($4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::double precision[], $9::double precision[])
             AS e(at, channel, kind, text, confidence, duration_ms)
           WHERE EXISTS (SELECT 1 FROM done) RETURNING 1)
         SELECT (SELECT count(*) FROM done) AS done, (SELECT count(*) FROM added) AS added`,
        [
          id,
          JSON.stringify(result),
          entries.length > 0 ? transcript!.callId : null,
          entries.map((e) => e.timestamp),
          entries.map((e) => e.channel),
          entries.map((e) => e.type),
          entries.map((e) => e.text),
          entries.map((e) => e.confidence),
          entries.map((e) => e.durationMs),
        ],
      );
      return toNumber(rows[0]?.done ?? 0) > 0;
    },

    async fail(id, code, message) {
      const { rows } = await db.query<{ id: string }>(
        'transcriptions.fail',
        `WITH done AS (
           UPDATE recording_transcriptions SET status = 'failed', error_code = $2, error_message = $3, lease_until = NULL, finished_at = now()
           WHERE id = $1 AND status = 'in_progress' RETURNING id, recording_id),
         ${markRecording('failed')}
         SELECT id FROM done`,
        [id, code, message],
      );
      return rows.length > 0;
    },
  };
}
