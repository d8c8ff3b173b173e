import type { Migration } from './migration.js';

export const fleet: Migration = {
  version: 15,
  name: 'fleet',
  sql: `
-- Each gateway of a fleet heartbeats its row; peers tell a live gateway from a dead one by last_heartbeat.
CREATE TABLE IF NOT EXISTS gateways (
  id             text PRIMARY KEY,
  version        text NOT NULL,
  started_at     timestamptz NOT NULL,
  last_heartbeat timestamptz NOT NULL,
  active_calls   integer NOT NULL DEFAULT 0,
  -- Where peers forward control requests for the calls this gateway holds (null: not reachable by peers).
  internal_url   text
);
-- Fleet-wide periodic jobs (the Twilio poller, sweeps) run on the holder of their lease; an expired lease may be taken.
CREATE TABLE IF NOT EXISTS fleet_leases (
  name        text PRIMARY KEY,
  holder      text NOT NULL,
  acquired_at timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);
-- The gateway whose spool holds a live recording; null for rows written before fleets.
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS owner_gateway text;
-- The gateway holding a call's primary stream: control requests naming the call (start, stop by callSid) go there.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS owner_gateway text;
-- interrupted: in progress on a gateway that stopped heartbeating, until it (or a replacement on its volume) recovers it.
ALTER TABLE recordings DROP CONSTRAINT IF EXISTS recordings_status_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_status_check
  CHECK (status IN ('in_progress', 'uploading', 'interrupted', 'completed', 'failed'));
CREATE INDEX IF NOT EXISTS recordings_owner_live_idx ON recordings (owner_gateway) WHERE status IN ('in_progress', 'uploading', 'interrupted');
`,
};
