import type { Executor } from './executor.js';

/** An agent's recording policy as stored: the client key only ever sealed under a master key. */
export interface AgentPolicyRow {
  orgId: string;
  agentId: string;
  enabled: boolean;
  stereo: boolean | null;
  /** The LiveKit participant identity of this agent, when the policy names one. */
  agentIdentity: string | null;
  keyId: string | null;
  sealedKey: Buffer | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface PutAgentPolicyInput {
  orgId: string;
  agentId: string;
  enabled: boolean;
  stereo: boolean | null;
  agentIdentity?: string | null;
  /** Both set (a sealed client key) or both null. */
  keyId: string | null;
  sealedKey: Uint8Array | null;
}

interface Row {
  org_id: string;
  agent_id: string;
  enabled: boolean;
  stereo: boolean | null;
  agent_identity: string | null;
  key_id: string | null;
  sealed_key: Buffer | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'org_id, agent_id, enabled, stereo, agent_identity, key_id, sealed_key, created_at, updated_at';

function toPolicy(row: Row): AgentPolicyRow {
  return {
    orgId: row.org_id,
    agentId: row.agent_id,
    enabled: row.enabled,
    stereo: row.stereo,
    agentIdentity: row.agent_identity,
    keyId: row.key_id,
    sealedKey: row.sealed_key,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function bytea(value: Uint8Array | null): Buffer | null {
  return value ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : null;
}

export interface AgentsRepository {
  /** Creates or replaces the agent's policy; `created` tells which. */
  put(input: PutAgentPolicyInput): Promise<{ policy: AgentPolicyRow; created: boolean }>;
  get(orgId: string, agentId: string): Promise<AgentPolicyRow | null>;
  /** Deletes the policy (and with it the sealed key); false when there was none. */
  delete(orgId: string, agentId: string): Promise<boolean>;
}

export function createAgentsRepository(db: Executor): AgentsRepository {
  return {
    async put(input) {
      const { rows } = await db.query<Row & { created: boolean }>(
        'agents.put',
        `INSERT INTO agents (org_id, agent_id, enabled, stereo, key_id, sealed_key, agent_identity)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org_id, agent_id) DO UPDATE SET
           enabled = EXCLUDED.enabled, stereo = EXCLUDED.stereo, key_id = EXCLUDED.key_id,
           sealed_key = EXCLUDED.sealed_key, agent_identity = EXCLUDED.agent_identity, updated_at = now()
         RETURNING ${COLUMNS}, (xmax = 0) AS created`,
        [input.orgId, input.agentId, input.enabled, input.stereo, input.keyId, bytea(input.sealedKey), input.agentIdentity ?? null],
      );
      const row = rows[0]!;
      return { policy: toPolicy(row), created: row.created };
    },

    async get(orgId, agentId) {
      const { rows } = await db.query<Row>('agents.get', `SELECT ${COLUMNS} FROM agents WHERE org_id = $1 AND agent_id = $2`, [
        orgId,
        agentId,
      ]);
      return rows[0] ? toPolicy(rows[0]) : null;
    },

    async delete(orgId, agentId) {
      const { rowCount } = await db.query('agents.delete', 'DELETE FROM agents WHERE org_id = $1 AND agent_id = $2', [orgId, agentId]);
      return (rowCount ?? 0) > 0;
    },
  };
}
