import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import { WebhookReceiver } from 'livekit-server-sdk';
import { RecordingOptionsSchema } from '../../config/index.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../../errors/index.js';
import { authenticate, requireOrganisationKey } from '../../http/auth.js';
import { createRouter, json, type RequestContext } from '../../http/http.js';
import type { GatewayPort } from '../../gateway/port.js';
import { parseEgressTextFrame } from './egress-frame.js';
import { DEFAULT_SIGNED_URL_MAX_LIFETIME_MS, LIVEKIT_EGRESS_PATH, verifyEgressQuery, type VerifiedEgressTarget } from './egress-url.js';
import { rateLimitedWarn } from '../../log/index.js';
import { LivekitRoomRecorder, type LivekitIngestConfig } from './room-recorder.js';
import { LIVEKIT_METRICS_SOURCE, type LivekitRoomSession, type RoomTrackInput } from './room-session.js';

export const LIVEKIT_ROOM_RECORDING_PATH = '/livekit/rooms/:room/recording';
export const LIVEKIT_WEBHOOK_PATH = '/livekit/webhook';
/** 48 kHz mono s16le is ~1 kB per 10 ms; a message near this is not Track Egress. */
const MAX_EGRESS_MESSAGE_BYTES = 256 * 1024;
const MAX_WEBHOOK_BODY_BYTES = 256 * 1024;

/** Close codes of the egress socket, in the application range so LiveKit logs them as such. */
export const EGRESS_CLOSE_CODES = {
  Normal: 1000,
  GoingAway: 1001,
  InternalError: 1011,
  RecordingFailed: 4500,
  /**
   * The sender is further ahead of the pipeline than the hard bound (the journal backlog, or the audio held
   * while the room's recording is set up): everything it sent before is kept; it may reconnect and go on.
   */
  Overloaded: 1013,
  /** The project already had MAX_STREAMS_PER_ACCOUNT egress sockets open (normally refused at upgrade with HTTP 429). */
  StreamLimit: 4408,
  /** The socket's audio ran further ahead of wall-clock time than MAX_AHEAD_OF_CLOCK_SECONDS (as Twilio's 4405). */
  AheadOfClock: 4405,
} as const;

/** Audio an egress socket may send while its room's recording is still being set up (≈ 11 min at 48 kHz): a sender
 * replaying a room flat out can send minutes of it in that time; beyond this it is closed (1013). */
const MAX_EARLY_BYTES = 64 * 1024 * 1024;

interface EgressSocketData {
  target: VerifiedEgressTarget;
  session?: LivekitRoomSession;
  input?: RoomTrackInput;
  detach?: () => void;
  /** Audio and events that arrived while the room's recording was being set up, in order. */
  early: Array<{ kind: 'audio'; data: Buffer; arrivedAt: number } | { kind: 'muted'; muted: boolean }>;
  earlyBytes: number;
  open: boolean;
  closing: boolean;
  untrack?: () => void;
  /** Releases this socket's slot of the project's MAX_STREAMS_PER_ACCOUNT. */
  releaseSlot?: () => void;
}

type EgressSocket = WebSocket<EgressSocketData>;

async function readJson(ctx: RequestContext, limit: number): Promise<unknown> {
  const body = await ctx.readBody(limit);
  if (body.byteLength === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    // No cause: V8's parse error quotes the body around the fault, and the options may hold a client key.
    throw new CallvaultError(ErrorCode.BadRequest, 'request body is not JSON');
  }
}

/**
 * LiveKit routes: start/stop a room recording (API), the webhook that starts them automatically, and the
 * Track Egress WebSocket. Returns the recorder so the gateway (and tests) can reach live room sessions.
 */
export function registerLivekitIngest(app: TemplatedApp, gateway: GatewayPort, config?: LivekitIngestConfig): LivekitRoomRecorder | null {
  const livekit = config ?? gateway.options.livekit;
  if (!livekit) return null;
  const { logger } = gateway.options;
  const metrics = gateway.metrics;
  const now = gateway.now;
  const recorder = new LivekitRoomRecorder(gateway, livekit);
  const receiver = new WebhookReceiver(livekit.apiKey, livekit.apiSecret);
  const router = createRouter(app, { logger, metrics });
  /** Egress sockets count against MAX_STREAMS_PER_ACCOUNT per LiveKit project (its organisation). */
  const slotKey = `livekit:${livekit.org}`;
  const maxAheadOfClockMs = livekit.maxAheadOfClockMs ?? gateway.options.twilio.maxAheadOfClockMs;
  const maxSignedUrlLifetimeMs = gateway.options.signedUrlMaxLifetimeMs ?? DEFAULT_SIGNED_URL_MAX_LIFETIME_MS;
  // A hostile or runaway sender can trigger these over and over: one line, then at most one per 10 s.
  const warnUpgradeRefused = rateLimitedWarn(logger, 'livekit egress upgrade refused');
  const warnAudioRefused = rateLimitedWarn(logger, 'livekit egress socket closed: its audio cannot be taken');
  const warnEarlyOverflow = rateLimitedWarn(logger, 'livekit egress socket sent too much before its recording started');

  const authorizeRoom = async (ctx: RequestContext): Promise<string> => {
    // Starting and stopping (DELETE) a room recording are both control; rooms are not tagged per user.
    const principal = await authenticate(ctx, gateway.db, 'control');
    requireOrganisationKey(principal);
    const room = ctx.params[0] ?? '';
    // Another organisation must not even learn that the room exists.
    if (principal.orgId !== livekit.org) throw new CallvaultError(ErrorCode.NotFound, `room ${room} not found`);
    return room;
  };

  router.route('post', LIVEKIT_ROOM_RECORDING_PATH, 'livekit_room_recording_start', async (ctx) => {
    // uWS hands the body over only to a reader registered before the handler's first await.
    const reading = readJson(ctx, 64 * 1024);
    reading.catch(() => undefined);
    const room = await authorizeRoom(ctx);
    const body = await reading;
    const parsed = RecordingOptionsSchema.partial().safeParse(body);
    if (!parsed.success) {
      throw new CallvaultError(ErrorCode.RecordingOptionsInvalid, 'recording options are invalid', {
        details: { issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) },
      });
    }
    const refused = gateway.admissionError();
    if (refused) {
      metrics.streamsRefused.inc({ source: LIVEKIT_METRICS_SOURCE, reason: refused.code });
      throw refused;
    }
    // Asking the API to record is itself the request: enabled defaults to true here.
    const started = await recorder.startRoomRecording({ room, trigger: 'api', request: { enabled: true, ...parsed.data } });
    return json(201, { callId: started.roomSid, recordingSid: started.recordingSid });
  });

  router.route('del', LIVEKIT_ROOM_RECORDING_PATH, 'livekit_room_recording_stop', async (ctx) => {
    const room = await authorizeRoom(ctx);
    const session = recorder.session(room);
    const summary = await recorder.finish(room);
    return json(200, {
      callId: session?.roomSid ?? null,
      recordingSid: summary?.recordingSid ?? null,
      status: summary?.status ?? null,
      durationMs: summary?.durationMs ?? null,
    });
  });

  router.route('post', LIVEKIT_WEBHOOK_PATH, 'livekit_webhook', async (ctx) => {
    const body = (await ctx.readBody(MAX_WEBHOOK_BODY_BYTES)).toString('utf8');
    const authHeader = ctx.headers.get('authorization');
    let event;
    try {
      event = await receiver.receive(body, authHeader);
    } catch (cause) {
      throw new CallvaultError(ErrorCode.Unauthorized, 'webhook signature is invalid', { cause });
    }
    try {
      await recorder.handleWebhook(event);
    } catch (err) {
      const error = toCallvaultError(err);
      // LiveKit retries failed deliveries; a conflict or an invalid option will not get better by retrying.
      if (error.code === ErrorCode.Conflict || error.code === ErrorCode.RecordingOptionsInvalid || error.code === ErrorCode.NotFound) {
        logger.warn({ event: event.event, room: event.room?.name, code: error.code }, 'livekit webhook ignored');
        return json(200, { ok: false, code: error.code });
      }
      throw error;
    }
    return json(200, { ok: true });
  });

  const closeSocket = (ws: EgressSocket, code: number, reason: string): void => {
    const data = ws.getUserData();
    if (!data.open || data.closing) return;
    data.closing = true;
    ws.end(code, reason);
  };

  /** Records one message; false when the socket had to be closed (overloaded, or the recording refused it). */
  const pushAudio = (ws: EgressSocket, input: RoomTrackInput, pcm: Buffer, arrivedAt: number): boolean => {
    try {
      input.push(pcm, arrivedAt);
      return true;
    } catch (err) {
      const error = toCallvaultError(err);
      const data = ws.getUserData();
      warnAudioRefused({ room: data.target.room, track: data.target.track, code: error.code });
      const code =
        error.code === ErrorCode.Overloaded
          ? EGRESS_CLOSE_CODES.Overloaded
          : error.code === ErrorCode.StreamAheadOfClock
            ? EGRESS_CLOSE_CODES.AheadOfClock
            : EGRESS_CLOSE_CODES.InternalError;
      closeSocket(ws, code, error.code);
      return false;
    }
  };

  const attach = async (ws: EgressSocket): Promise<void> => {
    const data = ws.getUserData();
    const { session, detach } = await recorder.attachEgress(data.target);
    // A socket that went away (or was closed for sending too much) while the recording was set up still has
    // what it sent recorded: nothing it sent is thrown away.
    if (!data.open && data.early.length === 0) {
      detach();
      return;
    }
    data.session = session;
    data.detach = detach;
    const input = session.openTrack(
      { participant: data.target.participant, track: data.target.track },
      data.target.role,
      data.target.sampleRate,
      { maxAheadOfClockMs },
    );
    data.input = input;
    data.earlyBytes = 0;
    for (const item of data.early.splice(0)) {
      if (item.kind === 'audio') {
        if (!pushAudio(ws, input, item.data, item.arrivedAt)) break;
      } else input.setMuted(item.muted);
    }
    data.early.length = 0;
    if (!data.open) {
      input.end();
      detach();
      return;
    }
    session.once('closed', (summary) => {
      closeSocket(ws, summary?.status === 'failed' ? EGRESS_CLOSE_CODES.RecordingFailed : EGRESS_CLOSE_CODES.Normal, 'recording finished');
    });
  };

  app.ws<EgressSocketData>(LIVEKIT_EGRESS_PATH, {
    maxPayloadLength: MAX_EGRESS_MESSAGE_BYTES,
    idleTimeout: 60,
    maxBackpressure: 64 * 1024,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      const query = new URLSearchParams(req.getQuery() ?? '');
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const refuse = (status: string, code: ErrorCode, message: string): void => {
        warnUpgradeRefused({ code, path: LIVEKIT_EGRESS_PATH });
        res.cork(() => {
          res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: { code, message } }));
        });
      };
      if (!gateway.acceptingStreams) {
        refuse('503 Service Unavailable', ErrorCode.ShuttingDown, 'gateway is shutting down');
        return;
      }
      let target: VerifiedEgressTarget;
      try {
        target = verifyEgressQuery(query, gateway.options.keyring.all.values(), now(), maxSignedUrlLifetimeMs);
      } catch (err) {
        const error = toCallvaultError(err);
        if (error.code === ErrorCode.BadRequest) refuse('400 Bad Request', error.code, error.message);
        else refuse('403 Forbidden', ErrorCode.SignatureInvalid, error.message);
        return;
      }
      // A socket joining (or reconnecting to) a room already being recorded belongs to an admitted call.
      const refused = recorder.session(target.room) ? null : gateway.admissionError();
      if (refused) {
        metrics.streamsRefused.inc({ source: LIVEKIT_METRICS_SOURCE, reason: refused.code });
        refuse(refused.code === ErrorCode.SpoolFull ? '507 Insufficient Storage' : '503 Service Unavailable', refused.code, refused.message);
        return;
      }
      if (!gateway.streamSlotFree(slotKey)) {
        metrics.streamsRefused.inc({ source: LIVEKIT_METRICS_SOURCE, reason: ErrorCode.StreamLimitReached });
        refuse('429 Too Many Requests', ErrorCode.StreamLimitReached, 'the LiveKit project has MAX_STREAMS_PER_ACCOUNT egress sockets open');
        return;
      }
      const data: EgressSocketData = { target, early: [], earlyBytes: 0, open: false, closing: false };
      res.upgrade(data, key, protocol, extensions, context);
    },

    open: (ws) => {
      const data = ws.getUserData();
      data.open = true;
      metrics.activeStreams.inc({ source: LIVEKIT_METRICS_SOURCE });
      data.untrack = gateway.trackSocket((code) => closeSocket(ws, code, ErrorCode.ShuttingDown));
      const release = gateway.acquireStreamSlot(slotKey);
      if (!release) {
        // Checked at upgrade; only a race between upgrade and open lands here.
        logger.warn({ room: data.target.room, code: ErrorCode.StreamLimitReached }, 'livekit egress refused');
        closeSocket(ws, EGRESS_CLOSE_CODES.StreamLimit, ErrorCode.StreamLimitReached);
        return;
      }
      data.releaseSlot = release;
      logger.info({ room: data.target.room, participant: data.target.participant, track: data.target.track, role: data.target.role }, 'livekit egress socket opened');
      attach(ws).catch((err: unknown) => {
        const error = toCallvaultError(err);
        logger.error({ room: data.target.room, code: error.code, err: error }, 'livekit egress could not start recording');
        closeSocket(ws, EGRESS_CLOSE_CODES.InternalError, error.code);
      });
    },

    message: (ws, message, isBinary) => {
      const data = ws.getUserData();
      if (data.closing) return;
      const arrivedAt = now();
      if (isBinary) {
        // uWS reuses the message buffer after this callback returns.
        const pcm = Buffer.from(new Uint8Array(message).slice());
        if (data.input) {
          pushAudio(ws, data.input, pcm, arrivedAt);
          return;
        }
        data.earlyBytes += pcm.byteLength;
        if (data.earlyBytes > MAX_EARLY_BYTES) {
          metrics.framesDropped.inc({ source: LIVEKIT_METRICS_SOURCE, reason: ErrorCode.Overloaded });
          warnEarlyOverflow({ room: data.target.room, track: data.target.track, code: ErrorCode.Overloaded, bytes: data.earlyBytes });
          closeSocket(ws, EGRESS_CLOSE_CODES.Overloaded, ErrorCode.Overloaded);
          return;
        }
        data.early.push({ kind: 'audio', data: pcm, arrivedAt });
        return;
      }
      const muted = parseEgressTextFrame(Buffer.from(message).toString('utf8'));
      if (muted === null) return;
      if (data.input) data.input.setMuted(muted);
      else data.early.push({ kind: 'muted', muted });
    },

    close: (ws, code) => {
      const data = ws.getUserData();
      data.open = false;
      data.untrack?.();
      data.releaseSlot?.();
      metrics.activeStreams.dec({ source: LIVEKIT_METRICS_SOURCE });
      metrics.streamsClosed.inc({ source: LIVEKIT_METRICS_SOURCE, code: String(code) });
      data.input?.end();
      data.detach?.();
    },
  });

  return recorder;
}
