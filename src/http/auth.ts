import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { ApiKeyScope, Database } from '../db/index.js';
import type { RequestContext } from './http.js';

export type { ApiKeyScope } from '../db/index.js';

export interface Principal {
  orgId: string;
  keyId: string;
  scopes: readonly ApiKeyScope[];
  /** A user-bound key sees only calls tagged with this user (`userId` in the call's metadata); null: all. */
  userId: string | null;
}

/** What a route needs when it does not say: reading for GET/HEAD, deleting for DELETE, control otherwise. */
function scopeForMethod(method: string): ApiKeyScope {
  if (method === 'get' || method === 'head') return 'read';
  if (method === 'del' || method === 'delete') return 'delete';
  return 'control';
}

/**
 * `Authorization: Bearer <api key>` → the organisation it belongs to, its scopes and its user. Keys are stored
 * only as hashes and compared in constant time by the database layer. Missing or bad credentials are
 * UNAUTHORIZED (401); a key without the scope the route needs is FORBIDDEN (403, `details.requiredScope`).
 */
export async function authenticate(ctx: RequestContext, db: Database, scope: ApiKeyScope = scopeForMethod(ctx.method)): Promise<Principal> {
  const header = ctx.headers.get('authorization') ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) throw new CallvaultError(ErrorCode.Unauthorized, 'missing bearer API key');
  const principal = await db.apiKeys.verify(match[1]);
  if (!principal) throw new CallvaultError(ErrorCode.Unauthorized, 'invalid API key');
  if (!principal.scopes.includes(scope)) {
    throw new CallvaultError(ErrorCode.Forbidden, `this API key lacks the ${scope} scope`, {
      details: { requiredScope: scope, scopes: principal.scopes },
    });
  }
  return principal;
}

/** For organisation-wide operations (the poller, agent policy): a user-bound key may not run them. */
export function requireOrganisationKey(principal: Principal): void {
  if (principal.userId !== null) {
    throw new CallvaultError(ErrorCode.Forbidden, 'a user-bound API key cannot run an organisation-wide operation', {
      details: { userBound: true },
    });
  }
}

/** Whether the key may see a call with this metadata: every call for an organisation key, its user's for a user-bound one. */
export function canSeeCall(principal: Principal, callMetadata: Record<string, unknown> | undefined | null): boolean {
  if (principal.userId === null) return true;
  return callMetadata?.['userId'] === principal.userId;
}
