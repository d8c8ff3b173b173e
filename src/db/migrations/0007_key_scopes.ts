import type { Migration } from './migration.js';

export const keyScopes: Migration = {
  version: 7,
  name: 'key_scopes',
  sql: `
-- What an API key may do (read, control, delete, admin) and, optionally, the one user whose calls it sees.
-- Keys made before scopes existed keep doing everything they did: every scope, no user.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scopes text[] NOT NULL DEFAULT ARRAY['read', 'control', 'delete', 'admin'];
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS user_id text;
-- A user-bound key lists only its user's calls (tagged in the call's metadata as userId).
CREATE INDEX IF NOT EXISTS calls_org_user_idx ON calls (org_id, (metadata ->> 'userId')) WHERE metadata ? 'userId';
`,
};
