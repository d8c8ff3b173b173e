/**
 * `/api/retention`: the organisation's retention period. With one set, the retention sweeper deletes the
 * organisation's finished recordings (and their artifacts) that ended more than `days` days ago; `null`
 * keeps them forever (the default).
 */
import { z } from 'zod';
import type { GatewayPort } from '../../gateway/port.js';
import { authenticate, requireOrganisationKey } from '../../http/auth.js';
import { json, type Router } from '../../http/http.js';
import { jsonBody } from './common.js';

export const RETENTION_PATH = '/api/retention';
export const MAX_RETENTION_DAYS = 36_500;

export const PutRetentionSchema = z.object({ days: z.int().min(1).max(MAX_RETENTION_DAYS).nullable() }).strict();

export function registerRetentionRoutes(router: Router, gateway: GatewayPort): void {
  const { db } = gateway;

  router.route('get', RETENTION_PATH, 'retention_get', async (ctx) => {
    const { orgId } = await authenticate(ctx, db, 'read');
    return json(200, { success: true, retention: { days: await db.organisations.retentionDays(orgId) } });
  });

  // The organisation's policy: changing it takes the admin scope and an organisation-wide key.
  router.route('put', RETENTION_PATH, 'retention_put', async (ctx) => {
    const principal = await authenticate(ctx, db, 'admin');
    requireOrganisationKey(principal);
    const { days } = await jsonBody(ctx, PutRetentionSchema);
    const stored = await db.organisations.setRetentionDays(principal.orgId, days);
    gateway.options.logger.info({ orgId: principal.orgId, days: stored }, 'retention period set');
    return json(200, { success: true, retention: { days: stored } });
  });
}
