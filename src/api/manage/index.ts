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
import { registerRetentionRoutes } from './retention.js';
import { registerTranscriptionRoutes, startTranscriptionRunner } from './transcription.js';
import type { RecordingMedia } from '../recordings.js';

export { CALL_RECORDINGS_PATH, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, recordingView, type CallRecordingRoutesDeps } from './call-recordings.js';
export { AGENT_PATH } from './agents.js';
export { MAX_RETENTION_DAYS, RETENTION_PATH } from './retention.js';
export { TRANSCRIPTION_PATH } from './transcription.js';
export { GATEWAYS_PATH } from './gateways.js';
export { TWILIO_RECORDING_WEBHOOK_PATH } from './webhooks.js';
export {
  ELEVENLABS_MAX_BODY_BYTES,
  ELEVENLABS_POST_CALL_WEBHOOK_PATH,
  ELEVENLABS_SIGNATURE_TOLERANCE_MS,
  verifyElevenLabsSignature,
} from './elevenlabs.js';

/** Registers the management routes (recordings, agents, webhooks). */
export function registerManageRoutes(router: Router, gateway: GatewayPort, deps: Omit<CallRecordingRoutesDeps, 'limiter'> & { media: RecordingMedia }): void {
  addManagePaths();
  // One limiter for every control route, so the resource form and the Twilio-style route share a call's budget.
  const limit = gateway.options.controlRateLimit;
  const limiter = createControlRateLimiter({ now: () => gateway.now(), ...(limit ? { limit: limit.limit, ...(limit.windowMs ? { windowMs: limit.windowMs } : {}) } : {}) });
  registerCallRecordingRoutes(router, gateway, { ...deps, limiter });
  // Jobs run here too (unless TRANSCRIPTION_CONCURRENCY is 0); the runner stops with the gateway.
  registerTranscriptionRoutes(router, gateway, startTranscriptionRunner(gateway, deps.media));
  registerTwilioCallRoutes(router, gateway, limiter);
  registerAgentRoutes(router, gateway);
  registerWebhookRoutes(router, gateway, deps.twilio);
  registerElevenLabsRoutes(router, gateway);
  registerRetentionRoutes(router, gateway);
  registerGatewayRoutes(router, gateway);
}
