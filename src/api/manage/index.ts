import type { GatewayPort } from '../../gateway/port.js';
import type { Router } from '../../http/http.js';
import { registerAgentRoutes } from './agents.js';
import { registerCallRecordingRoutes, type CallRecordingRoutesDeps } from './call-recordings.js';
import { registerWebhookRoutes } from './webhooks.js';
import { registerElevenLabsRoutes } from './elevenlabs.js';
import { addManagePaths } from './openapi.js';

export { CALL_RECORDINGS_PATH, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, recordingView, type CallRecordingRoutesDeps } from './call-recordings.js';
export { AGENT_PATH } from './agents.js';
export { TWILIO_RECORDING_WEBHOOK_PATH } from './webhooks.js';
export {
  ELEVENLABS_MAX_BODY_BYTES,
  ELEVENLABS_POST_CALL_WEBHOOK_PATH,
  ELEVENLABS_SIGNATURE_TOLERANCE_MS,
  verifyElevenLabsSignature,
} from './elevenlabs.js';

/** Registers the management routes (recordings, agents, webhooks). */
export function registerManageRoutes(router: Router, gateway: GatewayPort, deps: CallRecordingRoutesDeps): void {
  addManagePaths();
  registerCallRecordingRoutes(router, gateway, deps);
  registerAgentRoutes(router, gateway);
  registerWebhookRoutes(router, gateway, deps.twilio);
  registerElevenLabsRoutes(router, gateway);
}
