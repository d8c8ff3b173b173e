import type { Migration } from './migration.js';

export const manage: Migration = {
  version: 2,
  name: 'manage',
  sql: `
-- The id a recording has where it was made (Twilio RecordingSid, ElevenLabs conversation id): an import is
-- keyed on it, so retried and duplicate callbacks can never store the same recording twice.
ALTER TABLE recordings ADD COLUMN external_sid text;
CREATE UNIQUE INDEX recordings_org_source_external_sid_idx ON recordings (org_id, source, external_sid)
  WHERE external_sid IS NOT NULL;

-- Agent-level recording policy. A client key is held sealed under a master key, only while the agent exists.
CREATE TABLE agents (
  org_id     text NOT NULL REFERENCES organisations (id),
  agent_id   text NOT NULL CHECK (length(agent_id) BETWEEN 1 AND 200),
  enabled    boolean NOT NULL,
  stereo     boolean,
  key_id     text,
  sealed_key bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, agent_id),
  CHECK ((key_id IS NULL) = (sealed_key IS NULL))
);

-- The options a Twilio-side recording was started with through the API, kept until it is imported: its status
-- callback arrives later, possibly at another gateway instance.
CREATE TABLE twilio_recording_requests (
  org_id               text NOT NULL REFERENCES organisations (id),
  twilio_recording_sid text NOT NULL,
  call_sid             text NOT NULL,
  account_sid          text NOT NULL,
  stereo               boolean,
  key_id               text,
  sealed_key           bytea,
  created_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, twilio_recording_sid),
  CHECK ((key_id IS NULL) = (sealed_key IS NULL))
);
CREATE INDEX twilio_recording_requests_call_idx ON twilio_recording_requests (org_id, call_sid);
`,
};
