/**
 * Wires the edges onto the core: the Twilio, SignalWire and LiveKit ingest routes, the HTTP API (handed the Twilio side
 * from twilio-rest), the Twilio recording poller and the retention sweeper. The only place that knows every module.
 */
import { registerApi } from '../api/index.js';
import { Gateway } from '../gateway/gateway.js';
import type { GatewayOptions } from '../gateway/options.js';
import type { EdgeMount, GatewayPort } from '../gateway/port.js';
import { registerLivekitIngest } from '../ingest/livekit/index.js';
import { registerSignalWireIngest, registerTwilioIngest } from '../ingest/twilio/route.js';
import { startTwilioPoller, twilioImports } from '../twilio-rest/index.js';
import { RetentionSweeper } from './retention.js';

export { RetentionSweeper, DEFAULT_RETENTION_SWEEP_INTERVAL_MS, type RetentionDeletion, type RetentionSweeperDeps, type SweepResult } from './retention.js';

const sweepers = new WeakMap<GatewayPort, RetentionSweeper>();
/** The fleet-wide lease under which the retention sweeper runs (see GET /api/gateways). */
export const RETENTION_LEASE = 'retention-sweeper';

/** The gateway's retention sweeper (started unless `retention.enabled` is false), for tests and for wrapping. */
export function retentionSweeperOf(gateway: GatewayPort): RetentionSweeper {
  const sweeper = sweepers.get(gateway);
  if (!sweeper) throw new Error('the gateway was not mounted by mountEdges');
  return sweeper;
}

export const mountEdges: EdgeMount = (app, gateway) => {
  registerTwilioIngest(app, gateway);
  // Always mounted: with no SIGNALWIRE_PROJECTS every upgrade is refused (403), like an unknown signature.
  registerSignalWireIngest(app, gateway);
  if (gateway.options.livekit) registerLivekitIngest(app, gateway);
  const { removeRecording } = registerApi(app, gateway, twilioImports(gateway));
  // Stops itself once the gateway drains.
  startTwilioPoller(gateway);
  const retention = gateway.options.retention ?? {};
  // Fleet-wide: only the gateway holding this lease sweeps (it moves to a peer when that gateway dies).
  const retentionLease = retention.enabled !== false ? gateway.fleet.lease(RETENTION_LEASE) : null;
  const sweeper = new RetentionSweeper({
    db: gateway.db,
    remove: removeRecording,
    logger: gateway.options.logger.child({ component: 'retention' }),
    metrics: gateway.metrics,
    now: () => gateway.now(),
    mayRun: () => gateway.state === 'running' && retentionLease?.held === true,
    ...(retention.sweepIntervalMs ? { intervalMs: retention.sweepIntervalMs } : {}),
    ...(retention.scheduler ? { scheduler: retention.scheduler } : {}),
  });
  sweepers.set(gateway, sweeper);
  if (retention.enabled !== false) sweeper.start();
  gateway.signal.addEventListener('abort', () => void sweeper.close(), { once: true });
};

/** A gateway with every edge mounted: what `npm start` and the tests run. */
export function startGateway(options: GatewayOptions): Promise<Gateway> {
  return Gateway.start(options, mountEdges);
}
