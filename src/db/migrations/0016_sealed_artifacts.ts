import type { Migration } from './migration.js';

export const sealedArtifacts: Migration = {
  version: 16,
  name: 'sealed_artifacts',
  sql: `
-- A call's transcript.json, session_events.json and call_metadata.json, sealed as container objects (format
-- version 2, docs/recording-format.md) in the recordings' bucket. Server key mode keeps each object's data
-- key wrapped here; client key mode keeps no key. call_transcript_entries / call_events only stage what is
-- posted until the next seal, which removes the rows it sealed.
CREATE TABLE IF NOT EXISTS call_artifact_objects (
  call_id uuid NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
  kind text NOT NULL CHECK (kind IN ('transcript', 'events', 'metadata')),
  bucket text NOT NULL,
  object_key text NOT NULL,
  key_mode text NOT NULL CHECK (key_mode IN ('server', 'client')),
  key_id text,
  wrapped_key bytea,
  size_bytes bigint NOT NULL,
  sealed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (call_id, kind),
  CHECK ((key_mode = 'server') = (wrapped_key IS NOT NULL AND key_id IS NOT NULL))
);
-- While staged, an entry's text and an event's data are sealed too (AES-256-GCM under the master key key_id;
-- text is then '' and data '{}'): nothing posted is kept in plaintext at rest.
ALTER TABLE call_transcript_entries ADD COLUMN IF NOT EXISTS sealed bytea, ADD COLUMN IF NOT EXISTS key_id text;
ALTER TABLE call_events ADD COLUMN IF NOT EXISTS sealed bytea, ADD COLUMN IF NOT EXISTS key_id text;
`,
};
