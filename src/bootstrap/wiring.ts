/**
 * Wires the edges onto the core: the Twilio, SignalWire and LiveKit ingest routes, the HTTP API (handed the Twilio side
 * from twilio-rest) and the Twilio recording poller. The only place that knows every module.
 */
import { registerApi } from '../api/index.js';
import { Gateway } from '../gateway/gateway.js';
import type { GatewayOptions } from '../gateway/options.js';
import type { EdgeMount } from '../gateway/port.js';
import { registerLivekitIngest } from '../ingest/livekit/index.js';
import { registerSignalWireIngest, registerTwilioIngest } from '../ingest/twilio/route.js';
import { startTwilioPoller, twilioImports } from '../twilio-rest/index.js';

export const mountEdges: EdgeMount = (app, gateway) => {
  registerTwilioIngest(app, gateway);
  // Always mounted: with no SIGNALWIRE_PROJECTS every upgrade is refused (403), like an unknown signature.
  registerSignalWireIngest(app, gateway);
  if (gateway.options.livekit) registerLivekitIngest(app, gateway);
  registerApi(app, gateway, twilioImports(gateway));
  // Stops itself once the gateway drains.
  startTwilioPoller(gateway);
};

/** A gateway with every edge mounted: what `npm start` and the tests run. */
export function startGateway(options: GatewayOptions): Promise<Gateway> {
  return Gateway.start(options, mountEdges);
}
