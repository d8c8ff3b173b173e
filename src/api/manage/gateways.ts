/**
 * `GET /api/gateways`: the fleet as PostgreSQL sees it — every gateway that heartbeat into this database, when
 * it last did, its live calls and version, whether it counts as alive (heartbeat younger than
 * GATEWAY_DEAD_AFTER_SECONDS), and which gateway holds each fleet-wide job's lease. Fleet infrastructure rather
 * than an organisation's data: it names no call or recording, and takes an organisation-wide admin key.
 */
import type { GatewayPort } from '../../gateway/port.js';
import { authenticate, requireOrganisationKey } from '../../http/auth.js';
import { json, type Router } from '../../http/http.js';

export const GATEWAYS_PATH = '/api/gateways';

export function registerGatewayRoutes(router: Router, gateway: GatewayPort): void {
  router.route('get', GATEWAYS_PATH, 'gateways_list', async (ctx) => {
    const principal = await authenticate(ctx, gateway.db, 'admin');
    requireOrganisationKey(principal);
    const [gateways, leases] = await Promise.all([gateway.fleet.gateways(), gateway.fleet.leases()]);
    return json(200, {
      success: true,
      self: gateway.fleet.gatewayId,
      deadAfterMs: gateway.fleet.deadAfterMs,
      gateways: gateways.map((g) => ({
        id: g.id,
        version: g.version,
        alive: g.alive,
        startedAt: g.startedAt.toISOString(),
        lastHeartbeat: g.lastHeartbeat.toISOString(),
        heartbeatAgeMs: g.heartbeatAgeMs,
        activeCalls: g.activeCalls,
        internalUrl: g.internalUrl,
        leases: leases.filter((l) => l.holder === g.id && l.expiresAt.getTime() > Date.now()).map((l) => l.name),
      })),
      leases: leases.map((l) => ({ name: l.name, holder: l.holder, acquiredAt: l.acquiredAt.toISOString(), expiresAt: l.expiresAt.toISOString() })),
    });
  });
}
