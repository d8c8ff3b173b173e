import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Database } from '../db/index.js';
import type { RequestContext } from './http.js';

export interface Principal {
  orgId: string;
  keyId: string;
}

/**
 * `Authorization: Bearer <api key>` → the organisation it belongs to. Keys are stored only as hashes and
 * compared in constant time by the database layer. Missing or bad credentials are UNAUTHORIZED (401).
 */
export async function authenticate(ctx: RequestContext, db: Database): Promise<Principal> {
  const header = ctx.headers.get('authorization') ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) throw new CallvaultError(ErrorCode.Unauthorized, 'missing bearer API key');
  const principal = await db.apiKeys.verify(match[1]);
  if (!principal) throw new CallvaultError(ErrorCode.Unauthorized, 'invalid API key');
  return principal;
}
