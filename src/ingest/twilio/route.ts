import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import { RecordingOptionsSchema, type RecordingOptions } from '../../config/index.js';
import { agentRecordingOptions, layerRecordingOptions } from '../../gateway/port.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../../errors/index.js';
import type { Call, GatewayPort, TwilioAccount } from '../../gateway/port.js';
import type { InputFrame } from '../../pipeline/index.js';
import { closeFrameFor, TWILIO_CLOSE_CODES, TWILIO_SAMPLE_RATE } from './protocol.js';
import { TwilioStreamSession, type TwilioStartInfo } from './session.js';
import { identifyTwilioAccount, streamUrlForSignature } from './signature.js';

export const TWILIO_MEDIA_PATH = '/twilio/media';
/** Twilio's frames are ~300 bytes; anything larger than this is hostile and closes the stream with 1009. */
const MAX_MESSAGE_BYTES = 64 * 1024;
/**
 * uWS drops a connection without a close frame when a message exceeds its limit, so its limit sits
 * above ours: messages between the two get a proper 1009 and a log line; only absurd ones are cut.
 */
const TRANSPORT_MAX_MESSAGE_BYTES = 1024 * 1024;

interface SocketData {
  account: TwilioAccount | null;
  session?: TwilioStreamSession;
  call?: Call;
  /** Frames that arrived while the call and its recording were being set up. */
  early: InputFrame[];
  earlyArrivals: number[];
  starting?: Promise<void>;
  callSid?: string;
  streamSid?: string;
  /** G.711 law of the stream's media, from `start.mediaFormat.encoding`. */
  encoding?: 'mulaw' | 'alaw';
  open: boolean;
  closing: boolean;
  /** Twilio said `stop`: the call ended by itself, even if the gateway is draining meanwhile. */
  stopped?: boolean;
  untrack?: () => void;
  /** Releases this stream's per-account slot (MAX_STREAMS_PER_ACCOUNT). */
  releaseSlot?: () => void;
  startTimer?: NodeJS.Timeout;
}

type TwilioSocket = WebSocket<SocketData>;

/** The recording options a stream carries in its `recording` custom parameter (the listener/instance layer). */
function streamRecordingOptions(start: TwilioStartInfo): RecordingOptions | undefined {
  const raw = start.customParameters['recording'];
  if (raw === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (cause) {
    throw new CallvaultError(ErrorCode.RecordingOptionsInvalid, 'the recording custom parameter is not JSON', { cause });
  }
  const parsed = RecordingOptionsSchema.safeParse(json);
  if (!parsed.success) {
    throw new CallvaultError(ErrorCode.RecordingOptionsInvalid, 'the recording custom parameter is invalid', {
      details: { issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) },
    });
  }
  return parsed.data;
}

/**
 * Field by field: the stream's `recording` parameter, then the policy of the agent its `agentId` parameter
 * names, then the server default.
 */
async function recordingOptionsFor(gateway: GatewayPort, orgId: string, start: TwilioStartInfo): Promise<RecordingOptions> {
  const instance = streamRecordingOptions(start);
  const agent = await agentRecordingOptions(gateway.db, gateway.options.keyring, orgId, start.customParameters['agentId']);
  return layerRecordingOptions(gateway.options.recording.defaults, agent, instance);
}

/** `audio/x-alaw` (PCMA) streams are A-law; Twilio's default `audio/x-mulaw` (PCMU) µ-law. */
function g711Of(start: TwilioStartInfo): 'mulaw' | 'alaw' {
  return start.mediaFormat.encoding === 'audio/x-alaw' ? 'alaw' : 'mulaw';
}

/** What the recording's metadata keeps of the stream: everything but the client key. */
function streamMetadata(start: TwilioStartInfo, options: RecordingOptions): Record<string, unknown> {
  const { recording: _omitted, ...customParameters } = start.customParameters;
  return {
    streamSid: start.streamSid,
    accountSid: start.accountSid,
    tracks: start.tracks,
    mediaFormat: start.mediaFormat,
    customParameters,
    recordingOptions: { enabled: options.enabled, stereo: options.stereo === true, keyMode: options.key ? 'client' : 'server' },
    dtmf: [],
    marks: [],
  };
}

export function registerTwilioIngest(app: TemplatedApp, gateway: GatewayPort): void {
  const { logger, twilio } = gateway.options;
  const metrics = gateway.metrics;
  const now = gateway.now;
  // Per-frame counters resolved once: a label lookup per frame costs more than the increment.
  const framesReceived = {
    inbound: metrics.framesReceived.labels({ source: 'twilio', track: 'inbound' }),
    outbound: metrics.framesReceived.labels({ source: 'twilio', track: 'outbound' }),
  };
  const bytesReceived = metrics.bytesReceived.labels({ source: 'twilio' });

  const closeSocket = (ws: TwilioSocket, code: number, reason: string): void => {
    const data = ws.getUserData();
    if (!data.open || data.closing) return;
    data.closing = true;
    ws.end(code, reason);
  };

  /** Closes this stream only; what it sent so far is finalised. Every other call carries on. */
  const fail = (ws: TwilioSocket, err: unknown): void => {
    const data = ws.getUserData();
    const error = toCallvaultError(err);
    const { code, reason } = closeFrameFor(error);
    const log = code === TWILIO_CLOSE_CODES.InternalError ? logger.error.bind(logger) : logger.warn.bind(logger);
    log({ code: error.code, closeCode: code, callSid: data.callSid, streamSid: data.streamSid, err: error }, 'twilio stream rejected');
    metrics.framesDropped.inc({ source: 'twilio', reason: error.code });
    closeSocket(ws, code, reason);
    void finalise(ws).catch((err: unknown) => logger.error({ callSid: data.callSid, err }, 'could not finalise call'));
  };

  const finalise = async (ws: TwilioSocket): Promise<void> => {
    const data = ws.getUserData();
    await data.starting;
    const call = data.call;
    if (!call) return;
    await call.close();
  };

  const startCall = async (ws: TwilioSocket, start: TwilioStartInfo): Promise<void> => {
    const data = ws.getUserData();
    const account = data.account ?? twilio.accounts.find((a) => a.accountSid === start.accountSid);
    if (!account) throw new CallvaultError(ErrorCode.StreamAccountMismatch, 'stream account is not configured');
    if (!data.releaseSlot) {
      // Unsigned streams (validation off) name their account only here.
      const release = gateway.acquireStreamSlot(account.accountSid);
      if (!release) {
        metrics.streamsRefused.inc({ source: 'twilio', reason: ErrorCode.StreamLimitReached });
        throw new CallvaultError(ErrorCode.StreamLimitReached, 'the account has MAX_STREAMS_PER_ACCOUNT streams open', { retryable: true });
      }
      data.releaseSlot = release;
    }
    const options = await recordingOptionsFor(gateway, account.org, start);
    const agentId = start.customParameters['agentId'];
    const call = await gateway.openCall({
      orgId: account.org,
      source: 'twilio',
      externalId: start.callSid,
      metadata: { accountSid: start.accountSid, ...(agentId ? { agentId } : {}) },
      startedAt: new Date(now()),
    });
    for (const track of start.tracks) {
      call.addTrack({ id: track, role: track === 'inbound' ? 'caller' : 'agent', encoding: g711Of(start), sampleRate: TWILIO_SAMPLE_RATE });
    }
    try {
      if (options.enabled) await call.startRecording({ ...options, enabled: true }, streamMetadata(start, options));
    } catch (err) {
      await call.close();
      throw err;
    }
    // Only now do frames go straight to the call: until its recording exists they wait in `early`.
    data.call = call;
    // However the call ends (stop, API, shutdown, failure), its stream is closed once the recording is final,
    // with a code that says how it ended.
    call.once('closed', (summary) => {
      if (call.failure || summary?.status === 'failed') {
        closeSocket(ws, TWILIO_CLOSE_CODES.InternalError, call.failure?.code ?? summary?.errorCode ?? ErrorCode.Internal);
      } else if (!data.stopped && !gateway.acceptingStreams) closeSocket(ws, TWILIO_CLOSE_CODES.GoingAway, ErrorCode.ShuttingDown);
      else closeSocket(ws, TWILIO_CLOSE_CODES.Normal, 'stop');
    });
    const early = data.early.splice(0);
    const arrivals = data.earlyArrivals.splice(0);
    early.forEach((frame, i) => call.pushFrame(frame, arrivals[i] ?? now()));
  };

  const appendEvent = (ws: TwilioSocket, list: 'dtmf' | 'marks', event: Record<string, unknown>): void => {
    const data = ws.getUserData();
    void (async () => {
      await data.starting;
      const recording = data.call?.recording;
      if (!recording) return;
      await gateway.db.recordings.appendMetadataEvent(recording.id, list, event);
    })().catch((err: unknown) => logger.error({ callSid: data.callSid, err }, 'could not store stream event'));
  };

  app.ws<SocketData>(TWILIO_MEDIA_PATH, {
    maxPayloadLength: TRANSPORT_MAX_MESSAGE_BYTES,
    idleTimeout: 60,
    maxBackpressure: 64 * 1024,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      const pathAndQuery = req.getUrl() + (req.getQuery() ? `?${req.getQuery()}` : '');
      const signature = req.getHeader('x-twilio-signature');
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const refuse = (status: string, code: ErrorCode, message: string): void => {
        logger.warn({ code, path: req.getUrl() }, 'twilio stream upgrade refused');
        res.cork(() => {
          res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: { code, message } }));
        });
      };
      const refused = gateway.admissionError();
      if (refused) {
        metrics.streamsRefused.inc({ source: 'twilio', reason: refused.code });
        refuse(refused.code === ErrorCode.SpoolFull ? '507 Insufficient Storage' : '503 Service Unavailable', refused.code, refused.message);
        return;
      }
      let account: TwilioAccount | null = null;
      if (twilio.validateSignatures) {
        const url = streamUrlForSignature(gateway.publicUrl, pathAndQuery);
        account = identifyTwilioAccount(twilio.accounts, signature || undefined, url);
        if (!account) {
          refuse('403 Forbidden', ErrorCode.SignatureInvalid, 'X-Twilio-Signature does not match any configured account');
          return;
        }
        if (!gateway.streamSlotFree(account.accountSid)) {
          metrics.streamsRefused.inc({ source: 'twilio', reason: ErrorCode.StreamLimitReached });
          refuse('429 Too Many Requests', ErrorCode.StreamLimitReached, 'the account has MAX_STREAMS_PER_ACCOUNT streams open');
          return;
        }
      }
      const data: SocketData = { account, early: [], earlyArrivals: [], open: false, closing: false };
      res.upgrade(data, key, protocol, extensions, context);
    },

    open: (ws) => {
      const data = ws.getUserData();
      data.open = true;
      metrics.activeStreams.inc({ source: 'twilio' });
      data.untrack = gateway.trackSocket((code) => closeSocket(ws, code, ErrorCode.ShuttingDown));
      if (data.account) {
        const release = gateway.acquireStreamSlot(data.account.accountSid);
        if (!release) {
          // Checked at upgrade; only a race between upgrade and open lands here.
          metrics.streamsRefused.inc({ source: 'twilio', reason: ErrorCode.StreamLimitReached });
          fail(ws, new CallvaultError(ErrorCode.StreamLimitReached, 'the account has MAX_STREAMS_PER_ACCOUNT streams open', { retryable: true }));
          return;
        }
        data.releaseSlot = release;
      }
      const startTimeoutMs = gateway.streamStartTimeoutMs;
      data.startTimer = setTimeout(() => {
        if (data.callSid !== undefined || data.closing) return;
        const code = TWILIO_CLOSE_CODES.StartTimeout;
        logger.warn({ code: ErrorCode.StreamStartTimeout, closeCode: code, timeoutMs: startTimeoutMs, account: data.account?.accountSid }, 'twilio stream sent no start');
        metrics.streamsRefused.inc({ source: 'twilio', reason: ErrorCode.StreamStartTimeout });
        closeSocket(ws, code, ErrorCode.StreamStartTimeout);
      }, startTimeoutMs);
      data.session = new TwilioStreamSession(
        { now, maxAheadOfClockMs: twilio.maxAheadOfClockMs, expectedAccountSid: data.account?.accountSid ?? null },
        {
          onStart: (start) => {
            clearTimeout(data.startTimer);
            data.callSid = start.callSid;
            data.streamSid = start.streamSid;
            data.encoding = g711Of(start);
            logger.info({ callSid: start.callSid, streamSid: start.streamSid, tracks: start.tracks }, 'twilio stream started');
            data.starting = startCall(ws, start).catch((err: unknown) => fail(ws, err));
          },
          onMedia: (media) => {
            framesReceived[media.track].inc();
            bytesReceived.inc(media.payload.byteLength);
            const frame: InputFrame = {
              trackId: media.track,
              role: media.track === 'inbound' ? 'caller' : 'agent',
              encoding: data.encoding ?? 'mulaw',
              sampleRate: TWILIO_SAMPLE_RATE,
              position: media.timestampMs * (TWILIO_SAMPLE_RATE / 1000),
              data: media.payload,
            };
            const arrivedAt = now();
            if (data.call) {
              data.call.pushFrame(frame, arrivedAt);
            } else {
              data.early.push(frame);
              data.earlyArrivals.push(arrivedAt);
            }
          },
          onDtmf: (e) => appendEvent(ws, 'dtmf', { ...e, receivedAt: new Date(now()).toISOString() }),
          onMark: (e) => appendEvent(ws, 'marks', { ...e, receivedAt: new Date(now()).toISOString() }),
          onStop: () => {
            data.stopped = true;
            logger.info({ callSid: data.callSid, streamSid: data.streamSid }, 'twilio stream stopped');
            void finalise(ws).catch((err: unknown) => logger.error({ callSid: data.callSid, err }, 'could not finalise call'));
          },
        },
      );
    },

    message: (ws, message, isBinary) => {
      const data = ws.getUserData();
      if (data.closing || !data.session) return;
      try {
        if (message.byteLength > MAX_MESSAGE_BYTES) {
          throw new CallvaultError(ErrorCode.FrameTooLarge, 'message exceeds 64 KiB', { details: { bytes: message.byteLength } });
        }
        if (isBinary) throw new CallvaultError(ErrorCode.FrameMalformed, 'Twilio media streams send text frames only');
        data.session.handle(Buffer.from(message).toString('utf8'));
      } catch (err) {
        fail(ws, err);
      }
    },

    close: (ws, code) => {
      const data = ws.getUserData();
      data.open = false;
      data.untrack?.();
      clearTimeout(data.startTimer);
      data.releaseSlot?.();
      metrics.activeStreams.dec({ source: 'twilio' });
      metrics.streamsClosed.inc({ source: 'twilio', code: String(code) });
      if (!data.closing && code === 1006) {
        logger.warn({ closeCode: code, callSid: data.callSid, streamSid: data.streamSid }, 'twilio stream dropped');
      }
      // Whatever ended the socket, the audio received so far is finalised, never dropped.
      void finalise(ws).catch((err: unknown) => logger.error({ callSid: data.callSid, err }, 'could not finalise call'));
    },
  });
}
