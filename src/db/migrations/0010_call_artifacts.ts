import type { Migration } from './migration.js';

export const callArtifacts: Migration = {
  version: 10,
  name: 'call_artifacts',
  sql: `
-- What a call leaves behind besides its audio: transcript entries and session events (function calls are
-- events of type function_call), as a voice-agent bridge posts them. Deleted with their call.
CREATE TABLE IF NOT EXISTS call_transcript_entries (
  id bigserial PRIMARY KEY,
  call_id uuid NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  channel text NOT NULL CHECK (channel IN ('caller', 'bot')),
  kind text NOT NULL CHECK (kind IN ('input', 'output')),
  text text NOT NULL,
  confidence double precision,
  duration_ms double precision,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_transcript_entries_call_idx ON call_transcript_entries (call_id, at, id);
CREATE TABLE IF NOT EXISTS call_events (
  id bigserial PRIMARY KEY,
  call_id uuid NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  type text NOT NULL,
  media_ms double precision,
  data jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_events_call_idx ON call_events (call_id, at, id);
`,
};
