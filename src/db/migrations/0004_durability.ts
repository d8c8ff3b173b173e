import type { Migration } from './migration.js';

export const durability: Migration = {
  version: 4,
  name: 'durability',
  sql: `
-- The multipart upload a live recording streams into: recovery and deletion abort or complete it by id, which
-- also works on S3 endpoints without ListMultipartUploads.
ALTER TABLE recordings ADD COLUMN upload_id text;
`,
};
