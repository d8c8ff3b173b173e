import type { Gateway } from '../../gateway/gateway.js';
import type { Router } from '../http.js';
import { registerAgentRoutes } from './agents.js';
import { registerCallRecordingRoutes, type CallRecordingRoutesDeps } from './call-recordings.js';
import { registerWebhookRoutes } from './webhooks.js';
import { registerElevenLabsRoutes } from './elevenlabs.js';
import { startTwilioPoller } from '../../twilio-rest/poller.js';
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
export { layerRecordingOptions, agentRecordingOptions, sealClientKey, openClientKey, type PartialRecordingOptions } from './policy.js';
export { storeFinishedRecording, type Mp3Audio, type PcmAudio, type StoreFinishedParams, type StoreFinishedResult } from './store.js';

/** Registers the management routes (recordings, agents, webhooks) and starts the Twilio poller if configured. */
export function registerManageRoutes(router: Router, gateway: Gateway, deps: CallRecordingRoutesDeps): void {
  addManagePaths();
  registerCallRecordingRoutes(router, gateway, deps);
  registerAgentRoutes(router, gateway);
  registerWebhookRoutes(router, gateway);
  registerElevenLabsRoutes(router, gateway);
  startTwilioPoller(gateway);
}
