/**
 * `/api/agents/{agentId}`: an agent's recording policy. A Twilio stream's `agentId` custom parameter selects
 * it; precedence is listener/instance options, then the agent's, then the server default. A client key is
 * stored sealed under the master key, never returned (`keySet` says whether there is one), and deleted
 * with the agent.
 */
import { z } from 'zod';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import { assertClientKeyStrong } from '../../crypto/index.js';
import type { AgentPolicyRow } from '../../db/index.js';
import type { GatewayPort } from '../../gateway/port.js';
import { authenticate, requireOrganisationKey } from '../../http/auth.js';
import { json, type RequestContext, type Router } from '../../http/http.js';
import { jsonBody } from './common.js';
import { agentKeyContext, sealClientKey } from '../../gateway/port.js';

export const AGENT_PATH = '/api/agents/:agentId';
const AGENT_ID = /^[A-Za-z0-9._:@-]{1,200}$/;

const PutAgentSchema = z
  .object({
    options: z
      .object({
        recording: z
          .object({
            enabled: z.boolean(),
            key: z.string().min(1).optional(),
            stereo: z.boolean().optional(),
            agentIdentity: z.string().min(1).max(256).optional(),
          })
          .strict(),
      })
      .strict(),
  })
  .strict();

function agentView(policy: AgentPolicyRow): Record<string, unknown> {
  return {
    agentId: policy.agentId,
    options: {
      recording: {
        enabled: policy.enabled,
        ...(policy.stereo === null ? {} : { stereo: policy.stereo }),
        ...(policy.agentIdentity === null ? {} : { agentIdentity: policy.agentIdentity }),
        keySet: policy.sealedKey !== null,
      },
    },
    createdAt: policy.createdAt.toISOString(),
    updatedAt: policy.updatedAt.toISOString(),
  };
}

function agentIdOf(ctx: RequestContext): string {
  const agentId = ctx.params[0] ?? '';
  if (!AGENT_ID.test(agentId)) {
    throw new CallvaultError(ErrorCode.BadRequest, 'agentId is 1-200 letters, digits and . _ : @ -', { details: { agentId } });
  }
  return agentId;
}

export function registerAgentRoutes(router: Router, gateway: GatewayPort): void {
  const { db } = gateway;

  // Agent policy is the organisation's: changing it takes the admin scope and an organisation-wide key.
  const admin = async (ctx: Parameters<typeof authenticate>[0]) => {
    const principal = await authenticate(ctx, db, 'admin');
    requireOrganisationKey(principal);
    return principal;
  };

  router.route('put', AGENT_PATH, 'agents_put', async (ctx) => {
    const { orgId } = await admin(ctx);
    const agentId = agentIdOf(ctx);
    const { recording } = (await jsonBody(ctx, PutAgentSchema)).options;
    if (recording.key !== undefined) assertClientKeyStrong(recording.key);
    const sealed = recording.key === undefined ? null : sealClientKey(gateway.options.keyring, agentKeyContext(orgId, agentId), recording.key);
    const { policy, created } = await db.agents.put({
      orgId,
      agentId,
      enabled: recording.enabled,
      stereo: recording.stereo ?? null,
      agentIdentity: recording.agentIdentity ?? null,
      keyId: sealed?.keyId ?? null,
      sealedKey: sealed?.sealed ?? null,
    });
    return json(created ? 201 : 200, { success: true, agent: agentView(policy) });
  });

  router.route('get', AGENT_PATH, 'agents_get', async (ctx) => {
    const { orgId } = await authenticate(ctx, db, 'read');
    const policy = await db.agents.get(orgId, agentIdOf(ctx));
    if (!policy) throw new CallvaultError(ErrorCode.NotFound, 'no such agent');
    return json(200, { success: true, agent: agentView(policy) });
  });

  router.route('del', AGENT_PATH, 'agents_delete', async (ctx) => {
    const { orgId } = await admin(ctx);
    if (!(await db.agents.delete(orgId, agentIdOf(ctx)))) throw new CallvaultError(ErrorCode.NotFound, 'no such agent');
    return { status: 204, headers: {}, body: '' };
  });
}
