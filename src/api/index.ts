import type { TemplatedApp } from 'uWebSockets.js';
import type { GatewayPort, TwilioImports } from '../gateway/port.js';
import { ErrorCode } from '../errors/index.js';
import { createRouter, json, registerNotFound } from '../http/http.js';
import { openApiDocument } from './openapi.js';
import { registerRecordingRoutes, type RecordingMedia } from './recordings.js';
import { registerArtifactRoutes } from './artifacts.js';
import { registerManageRoutes } from './manage/index.js';
import { registerPlaybackRoutes } from './playback.js';
import { registerConsoleRoutes } from './console.js';

export { authenticate, type Principal } from '../http/auth.js';
export {
  createRouter,
  errorResult,
  json,
  registeredRoutes,
  streamed,
  type Handler,
  type HttpResult,
  type Method,
  type RegisteredRoute,
  type RequestContext,
  type Router,
  type StreamedResult,
} from '../http/http.js';
export {
  addPaths,
  errorResponse,
  openApiDocument,
  openApiPath,
  openApiVerb,
  WEBSOCKET_EXTENSION,
  type OperationObject,
  type PathItem,
} from './openapi.js';
export { CALL_RECORDING_PATH, MAX_PRESIGNED_URL_TTL_SECONDS } from './recordings.js';
export { CALL_EVENTS_PATH, CALL_METADATA_PATH, CALL_TRANSCRIPT_PATH, isoMicros } from './artifacts.js';
export { CALL_PLAYBACK_URL_PATH, PLAYBACK_PATH, signPlaybackPath, verifyPlaybackQuery, type PlaybackTarget, type PlaybackTrack } from './playback.js';
export { CONSOLE_CSP, CONSOLE_PATH } from './console.js';
export { parseRange, planMedia, planWav, type ByteRange, type MediaPlan, type WavPlan } from './wav-stream.js';

/** What bootstrap reuses of the API: the one deletion of a recording (the retention sweeper's too). */
export interface ApiHandles {
  removeRecording: RecordingMedia['remove'];
}

/** Registers every HTTP route of the gateway on the uWS app; the Twilio side comes from twilio-rest, through bootstrap. */
export function registerApi(app: TemplatedApp, gateway: GatewayPort, twilio: TwilioImports): ApiHandles {
  const router = createRouter(app, { logger: gateway.options.logger, metrics: gateway.metrics });

  router.route('get', '/healthz', 'healthz', () => json(200, { status: 'ok' }));

  router.route('get', '/readyz', 'readyz', async () => {
    const checks: Record<string, boolean> = {
      accepting: gateway.acceptingStreams,
      workers: gateway.workersReady,
      database: false,
      storage: false,
      spool: gateway.spoolHasRoom,
    };
    if (checks['accepting']) {
      [checks['database'], checks['storage']] = await Promise.all([
        gateway.db.ping().then(
          () => true,
          () => false,
        ),
        gateway.storageReachable(),
      ]);
    }
    // S3 being away degrades the gateway but does not make it unready: calls record into the spool and their
    // uploads are retried, so a load balancer should keep sending streams. A full spool disk does make it unready.
    const ready = checks['accepting']! && checks['workers']! && checks['database']! && checks['spool']!;
    const degraded = ready && !checks['storage'];
    const uploadBacklog = gateway.metrics.uploadBacklogTotals();
    const reasons: { check: string; code: string; message: string }[] = [];
    if (!checks['spool']) {
      reasons.push({ check: 'spool', code: ErrorCode.SpoolFull, message: `free space under DATA_DIR (${gateway.spoolFreeBytes ?? '?'} bytes) is below the ${gateway.spoolMinFreeBytes}-byte reserve` });
    }
    return json(ready ? 200 : 503, {
      status: degraded ? 'degraded' : ready ? 'ready' : 'unready',
      checks,
      uploadBacklog,
      ...(reasons.length > 0 ? { reasons } : {}),
    });
  });

  router.route('get', '/metrics', 'metrics', async () => {
    const { contentType, body } = await gateway.metrics.render();
    return { status: 200, headers: { 'content-type': contentType }, body };
  });

  router.route('get', '/openapi.json', 'openapi', () => json(200, openApiDocument()));

  const media = registerRecordingRoutes(router, gateway);
  registerArtifactRoutes(router, gateway, media);
  registerPlaybackRoutes(router, gateway, media);
  registerConsoleRoutes(router, gateway);
  registerManageRoutes(router, gateway, { ...media, twilio, media });
  registerNotFound(app, { metrics: gateway.metrics });
  return { removeRecording: media.remove };
}
