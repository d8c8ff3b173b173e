import type { Migration } from './migration.js';

export const openUploads: Migration = {
  version: 6,
  name: 'open_uploads',
  sql: `
-- Every multipart upload of a recording that may still be open in S3: each attempt's UploadId is added when it
-- starts and removed once it is completed or known aborted. An attempt whose abort failed while S3 was away
-- stays listed, so a restart, a later success or a DELETE aborts it by id (no ListMultipartUploads).
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS open_upload_ids text[] NOT NULL DEFAULT '{}';
UPDATE recordings SET open_upload_ids = ARRAY[upload_id] WHERE upload_id IS NOT NULL AND open_upload_ids = '{}';
`,
};
