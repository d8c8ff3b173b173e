import type { Migration } from './migration.js';

export const transcriptImports: Migration = {
  version: 14,
  name: 'transcript_imports',
  sql: `
-- Transcripts brought in from elsewhere (an ElevenLabs post_call_transcription), once per organisation and
-- source id: a retried or duplicated delivery finds its claim and stores nothing again. Deleted with the call.
CREATE TABLE IF NOT EXISTS call_transcript_imports (
  org_id text NOT NULL,
  source text NOT NULL,
  external_id text NOT NULL,
  call_id uuid NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
  entries integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, source, external_id)
);
CREATE INDEX IF NOT EXISTS call_transcript_imports_call_idx ON call_transcript_imports (call_id);
`,
};
