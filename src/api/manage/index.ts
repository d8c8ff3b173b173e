import type { GatewayPort } from '../../gateway/port.js';
import type { Router } from '../../http/http.js';
import { registerAgentRoutes } from './agents.js';
import { registerCallRecordingRoutes, type CallRecordingRoutesDeps } from './call-recordings.js';
import { registerWebhookRoutes } from './webhooks.js';
import { registerGatewayRoutes } from './gateways.js';
import { registerElevenLabsRoutes } from './elevenlabs.js';
import { addManagePaths } from './openapi.js';
import { createControlRateLimiter } from './rate-limit.js';
import { registerTwilioCallRoutes } from './twilio-calls.js';

export { CALL_RECORDINGS_PATH, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, recordingView, type CallRecordingRoutesDeps } from './call-recordings.js';
export { AGENT_PATH } from './agents.js';
export { GATEWAYS_PATH } from './gateways.js';
export { TWILIO_RECORDING_WEBHOOK_PATH } from './webhooks.js';
export {
  ELEVENLABS_MAX_BODY_BYTES,
  ELEVENLABS_POST_CALL_WEBHOOK_PATH,
  ELEVENLABS_SIGNATURE_TOLERANCE_MS,
  verifyElevenLabsSignature,
} from './elevenlabs.js';

/** Registers the management routes (recordings, agents, webhooks). */
export function registerManageRoutes(router: Router, gateway: GatewayPort, deps: Omit<CallRecordingRoutesDeps, 'limiter'>): void {
  addManagePaths();
  // One limiter for every control route, so the resource form and the Twilio-style route share a call's budget.
  const limit = gateway.options.controlRateLimit;
  const limiter = createControlRateLimiter({ now: () => gateway.now(), ...(limit ? { limit: limit.limit, ...(limit.windowMs ? { windowMs: limit.windowMs } : {}) } : {}) });
  registerCallRecordingRoutes(router, gateway, { ...deps, limiter });
  registerTwilioCallRoutes(router, gateway, limiter);
  registerAgentRoutes(router, gateway);
  registerWebhookRoutes(router, gateway, deps.twilio);
  registerElevenLabsRoutes(router, gateway);
  registerGatewayRoutes(router, gateway);
}
