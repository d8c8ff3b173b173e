import type { Migration } from './migration.js';

export const retention: Migration = {
  version: 13,
  name: 'retention',
  sql: `
-- An organisation's retention period: recordings (and their artifacts) that ended more than this many days ago
-- are deleted by the retention sweeper. NULL keeps them forever.
ALTER TABLE organisations ADD COLUMN IF NOT EXISTS retention_days integer CHECK (retention_days IS NULL OR retention_days BETWEEN 1 AND 36500);
CREATE INDEX IF NOT EXISTS recordings_retention_idx ON recordings (org_id, (COALESCE(ended_at, started_at))) WHERE status IN ('completed', 'failed');
`,
};
