import type { Migration } from './migration.js';

export const spoolCheckpoints: Migration = {
  version: 17,
  name: 'spool_checkpoints',
  sql: `
-- Set at a recording's first spool checkpoint to S3 (checkpoints/<id>/): a peer may finish it if its owner's volume is lost.
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS checkpointed_at timestamptz;
CREATE INDEX IF NOT EXISTS recordings_interrupted_checkpointed_idx ON recordings (owner_gateway) WHERE status = 'interrupted' AND checkpointed_at IS NOT NULL;
`,
};
