import type { Migration } from './migration.js';

export const transcriptions: Migration = {
  version: 12,
  name: 'transcriptions',
  sql: `
-- Transcription jobs of recordings (POST /api/call-recordings/{id}/transcription): one per recording (a new
-- request replaces a failed one). A runner claims a queued job, or an in-progress one whose lease
-- ran out (its gateway stopped or died), so a job survives restarts. Deleted with its recording.
CREATE TABLE IF NOT EXISTS recording_transcriptions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recording_id uuid NOT NULL UNIQUE REFERENCES recordings(id) ON DELETE CASCADE,
  org_id text NOT NULL REFERENCES organisations(id),
  status text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed')),
  engine text NOT NULL,
  language text NOT NULL,
  diarization boolean NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  lease_until timestamptz,
  error_code text,
  error_message text,
  result jsonb,
  requested_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS recording_transcriptions_pending_idx ON recording_transcriptions (requested_at)
  WHERE status IN ('queued', 'in_progress');
`,
};
