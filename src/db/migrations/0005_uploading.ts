import type { Migration } from './migration.js';

export const uploading: Migration = {
  version: 5,
  name: 'uploading',
  sql: `
-- 'uploading': the audio is complete in the gateway's spool, S3 has not taken all of it yet (slow or away).
ALTER TABLE recordings DROP CONSTRAINT IF EXISTS recordings_status_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_status_check CHECK (status IN ('in_progress', 'uploading', 'completed', 'failed'));
`,
};
