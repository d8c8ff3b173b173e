import type { Migration } from './migration.js';

export const init: Migration = {
  version: 1,
  name: 'init',
  sql: `
CREATE TABLE organisations (
  id         text PRIMARY KEY,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id     text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
  prefix     text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-f]{12}$'),
  hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
  label      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id, created_at);

CREATE TABLE calls (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id      text NOT NULL REFERENCES organisations (id),
  source      text NOT NULL CHECK (source IN ('twilio', 'livekit')),
  external_id text NOT NULL,
  status      text NOT NULL CHECK (status IN ('active', 'ended')),
  started_at  timestamptz NOT NULL,
  ended_at    timestamptz,
  metadata    jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, source, external_id),
  -- Target of the recordings foreign key, so a recording can only point at a call of its own organisation.
  UNIQUE (org_id, id),
  CHECK (status = 'active' OR ended_at IS NOT NULL)
);
-- Lookups by CallSid / room SID come without a source.
CREATE INDEX calls_org_external_idx ON calls (org_id, external_id);

CREATE TABLE recordings (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recording_sid text NOT NULL UNIQUE CHECK (recording_sid ~ '^CR[0-9a-f]{32}$'),
  -- No cascade: deleting rows would orphan their encrypted objects in the bucket.
  org_id        text NOT NULL REFERENCES organisations (id),
  call_id       uuid,
  status        text NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
  source        text NOT NULL CHECK (source IN ('gateway', 'livekit', 'twilio', 'elevenlabs')),
  channels      int NOT NULL CHECK (channels BETWEEN 1 AND 32),
  sample_rate   int NOT NULL CHECK (sample_rate > 0),
  format        text NOT NULL,
  media_type    text NOT NULL,
  duration_ms   bigint CHECK (duration_ms >= 0),
  size_bytes    bigint CHECK (size_bytes >= 0),
  bucket        text NOT NULL,
  object_key    text NOT NULL,
  key_mode      text NOT NULL CHECK (key_mode IN ('server', 'client')),
  key_id        text,
  wrapped_key   bytea,
  error_code    text,
  started_at    timestamptz NOT NULL,
  ended_at      timestamptz,
  metadata      jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  -- No cascade: a call that still has recordings must not disappear from under them.
  FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id),
  -- A completed recording without its size and duration could not be served or audited.
  CHECK (status <> 'completed' OR (duration_ms IS NOT NULL AND size_bytes IS NOT NULL AND ended_at IS NOT NULL)),
  CHECK (status <> 'failed' OR (error_code IS NOT NULL AND ended_at IS NOT NULL)),
  -- Server-mode recordings are unreadable without the wrapped data key and the master key that wrapped it.
  CHECK (key_mode <> 'server' OR (key_id IS NOT NULL AND wrapped_key IS NOT NULL))
);
-- Listing pages through one organisation newest first; each filter gets an index with the same ordering
-- so a page is an index range scan plus an offset, not a sort of every matching row.
CREATE INDEX recordings_org_started_idx ON recordings (org_id, started_at DESC, id DESC);
CREATE INDEX recordings_org_status_started_idx ON recordings (org_id, status, started_at DESC, id DESC);
CREATE INDEX recordings_org_source_started_idx ON recordings (org_id, source, started_at DESC, id DESC);
CREATE INDEX recordings_org_call_started_idx ON recordings (org_id, call_id, started_at DESC, id DESC);
`,
};
