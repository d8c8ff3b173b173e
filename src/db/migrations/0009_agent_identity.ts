import type { Migration } from './migration.js';

export const agentIdentity: Migration = {
  version: 9,
  name: 'agent_identity',
  sql: `
-- An agent policy may name the LiveKit participant identity of its agent (recording option agentIdentity):
-- that participant goes on the agent's channel in stereo recordings.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS agent_identity text;
`,
};
