import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import { RecordingOptionsSchema, USER_ID, type RecordingOptions } from '../../config/index.js';
import { agentRecordingOptions, layerRecordingOptions } from '../../gateway/port.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../../errors/index.js';
import type { Call, GatewayPort, TwilioAccount } from '../../gateway/port.js';
import type { InputFrame } from '../../pipeline/index.js';
import { closeFrameFor, TWILIO_CLOSE_CODES, TWILIO_SAMPLE_RATE, type StreamDialect } from './protocol.js';
import { TwilioStreamSession, type TwilioStartInfo } from './session.js';
import { identifyTwilioAccount, streamUrlForSignature } from './signature.js';
import { STREAM_TOKEN_PARAMETER, verifyStreamToken } from './stream-token.js';
import { rateLimitedWarn } from '../../log/index.js';

/** SIGNED_URL_MAX_LIFETIME_SECONDS' default: a stream token may be valid for at most a day. */
const DEFAULT_SIGNED_URL_MAX_LIFETIME_MS = 24 * 3600_000;

export const TWILIO_MEDIA_PATH = '/twilio/media';
/** SignalWire's Media Streams (Twilio's protocol, SignalWire's identifiers and signature header). */
export const SIGNALWIRE_MEDIA_PATH = '/signalwire/media';

/** What differs between the carriers that speak Twilio's Media Streams protocol; everything else is shared. */
interface StreamFlavour {
  /** The call source, and the `source` label of the stream metrics. */
  source: 'twilio' | 'signalwire';
  path: string;
  dialect: StreamDialect;
  /** Upgrade headers that may carry the signature, in order: the first one present is checked. */
  signatureHeaders: readonly string[];
  accounts: (gateway: GatewayPort) => TwilioAccount[];
}

const TWILIO_FLAVOUR: StreamFlavour = {
  source: 'twilio',
  path: TWILIO_MEDIA_PATH,
  dialect: 'twilio',
  signatureHeaders: ['x-twilio-signature'],
  accounts: (gateway) => gateway.options.twilio.accounts,
};

/**
 * SignalWire signs with X-SignalWire-Signature (the same HMAC-SHA1 scheme, keyed by the project's token); its
 * SDKs accept X-Twilio-Signature as an alias on Compatibility requests, so that header is checked when the
 * SignalWire one is absent. The project id is the account.
 */
const SIGNALWIRE_FLAVOUR: StreamFlavour = {
  source: 'signalwire',
  path: SIGNALWIRE_MEDIA_PATH,
  dialect: 'signalwire',
  signatureHeaders: ['x-signalwire-signature', 'x-twilio-signature'],
  accounts: (gateway) => (gateway.options.signalwire?.projects ?? []).map((p) => ({ org: p.org, accountSid: p.projectId, authToken: p.token })),
};
/** Twilio's frames are ~300 bytes; anything larger than this is hostile and closes the stream with 1009. */
const MAX_MESSAGE_BYTES = 64 * 1024;
/**
 * uWS drops a connection without a close frame when a message exceeds its limit, so its limit sits
 * above ours: messages between the two get a proper 1009 and a log line; only absurd ones are cut.
 */
const TRANSPORT_MAX_MESSAGE_BYTES = 1024 * 1024;

interface SocketData {
  account: TwilioAccount | null;
  /** The CallSid the URL's stream token was issued for, when the URL carried one (verified at upgrade). */
  tokenCallSid?: string;
  session?: TwilioStreamSession;
  call?: Call;
  /** The id of the stream's recording (kept past its close, for the close code in its metadata). */
  recordingId?: string;
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
  } catch {
    // No cause: V8's parse error quotes the text around the fault, and this text may hold the client key.
    throw new CallvaultError(ErrorCode.RecordingOptionsInvalid, 'the recording custom parameter is not JSON');
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

/**
 * What the call row is tagged with from the stream's custom parameters: `userId` (a user-bound API key sees only
 * its user's calls) and `calledNumber` (an ElevenLabs delivery without a chat_id is matched by it).
 */
function callTags(params: Record<string, string>): Record<string, string> {
  const tags: Record<string, string> = {};
  const userId = params['userId'];
  if (userId !== undefined && USER_ID.test(userId)) tags['userId'] = userId;
  const calledNumber = params['calledNumber'] ?? params['called_number'];
  if (calledNumber !== undefined && /^\+?[0-9A-Za-z*#:._@-]{1,64}$/.test(calledNumber)) tags['calledNumber'] = calledNumber;
  return tags;
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
  registerMediaStreamIngest(app, gateway, TWILIO_FLAVOUR);
}

/** `/signalwire/media`, for the projects of SIGNALWIRE_PROJECTS. */
export function registerSignalWireIngest(app: TemplatedApp, gateway: GatewayPort): void {
  registerMediaStreamIngest(app, gateway, SIGNALWIRE_FLAVOUR);
}

function registerMediaStreamIngest(app: TemplatedApp, gateway: GatewayPort, flavour: StreamFlavour): void {
  const { twilio } = gateway.options;
  const { source } = flavour;
  const logger = source === 'twilio' ? gateway.options.logger : gateway.options.logger.child({ source });
  const accounts = flavour.accounts(gateway);
  const metrics = gateway.metrics;
  const now = gateway.now;
  // Per-frame counters resolved once: a label lookup per frame costs more than the increment.
  const framesReceived = {
    inbound: metrics.framesReceived.labels({ source, track: 'inbound' }),
    outbound: metrics.framesReceived.labels({ source, track: 'outbound' }),
  };
  const bytesReceived = metrics.bytesReceived.labels({ source });
  const required = twilio.streamTokenRequired;
  const tokenRequired = (org: string): boolean => required === '*' || (required?.includes(org) ?? false);
  const maxTokenLifetimeMs = gateway.options.signedUrlMaxLifetimeMs ?? DEFAULT_SIGNED_URL_MAX_LIFETIME_MS;
  // Anyone can knock: refusals are logged once, then at most once per 10 s (the metrics count every one).
  const warnUpgradeRefused = rateLimitedWarn(logger, 'twilio stream upgrade refused');

  const closeSocket = (ws: TwilioSocket, code: number, reason: string): void => {
    const data = ws.getUserData();
    if (!data.open || data.closing) return;
    data.closing = true;
    ws.end(code, reason);
    // The close code goes into the recording's metadata (session_events.json); a failed write is logged.
    const recordingId = data.recordingId;
    if (recordingId) {
      gateway.db.recordings
        .mergeMetadata(recordingId, { streamClose: { code, reason, at: new Date(now()).toISOString() } })
        .catch((err: unknown) => logger.error({ callSid: data.callSid, err }, 'could not store stream close code'));
    }
  };

  /** Closes this stream only; what it sent so far is finalised. Every other call carries on. */
  const fail = (ws: TwilioSocket, err: unknown): void => {
    const data = ws.getUserData();
    const error = toCallvaultError(err);
    const { code, reason } = closeFrameFor(error);
    const log = code === TWILIO_CLOSE_CODES.InternalError ? logger.error.bind(logger) : logger.warn.bind(logger);
    log({ code: error.code, closeCode: code, callSid: data.callSid, streamSid: data.streamSid, err: error }, 'twilio stream rejected');
    metrics.framesDropped.inc({ source, reason: error.code });
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
    const account = data.account ?? accounts.find((a) => a.accountSid === start.accountSid);
    if (!account) throw new CallvaultError(ErrorCode.StreamAccountMismatch, 'stream account is not configured');
    if (!data.releaseSlot) {
      // Unsigned streams (validation off) name their account only here.
      const release = gateway.acquireStreamSlot(account.accountSid);
      if (!release) {
        metrics.streamsRefused.inc({ source, reason: ErrorCode.StreamLimitReached });
        throw new CallvaultError(ErrorCode.StreamLimitReached, 'the account has MAX_STREAMS_PER_ACCOUNT streams open', { retryable: true });
      }
      data.releaseSlot = release;
    }
    if (data.tokenCallSid !== undefined ? data.tokenCallSid !== start.callSid : tokenRequired(account.org)) {
      throw new CallvaultError(
        ErrorCode.StreamTokenInvalid,
        data.tokenCallSid !== undefined ? 'the stream token was issued for another call' : 'this organisation requires a stream token',
      );
    }
    const options = await recordingOptionsFor(gateway, account.org, start);
    const agentId = start.customParameters['agentId'];
    const metadata = { accountSid: start.accountSid, ...(agentId ? { agentId } : {}), ...callTags(start.customParameters) };
    const startedAt = new Date(now());
    // Each streamSid starts once per call, and the call's first stream is its primary: a later stream (a second
    // <Stream>, or a replayed upgrade) is recorded on its own, never ends the call's row, and never becomes what
    // GET /calls/{id}/recording serves.
    // Admission first (as openCall checks it), so a refused stream registers nothing on the call's row.
    const refusedNow = gateway.admissionError();
    if (refusedNow) throw refusedNow;
    const claim = await gateway.db.calls.claimStream({ orgId: account.org, source, externalId: start.callSid, streamSid: start.streamSid, startedAt, metadata });
    if (!claim) throw new CallvaultError(ErrorCode.StreamReplayed, 'this streamSid has already started on this call');
    if (!claim.primary) logger.warn({ callSid: start.callSid, streamSid: start.streamSid }, 'twilio stream is a later stream of its call');
    const call = await gateway.openCall({
      orgId: account.org,
      source,
      externalId: start.callSid,
      metadata,
      startedAt,
      ...(claim.primary ? {} : { primary: false, dbId: claim.call.id }),
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
    if (call.recording) data.recordingId = call.recording.id;
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

  app.ws<SocketData>(flavour.path, {
    maxPayloadLength: TRANSPORT_MAX_MESSAGE_BYTES,
    idleTimeout: 60,
    maxBackpressure: 64 * 1024,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      const pathAndQuery = req.getUrl() + (req.getQuery() ? `?${req.getQuery()}` : '');
      // uWS answers '' for a header that is absent.
      const signature = flavour.signatureHeaders.map((h) => req.getHeader(h)).find((v) => v !== '');
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const refuse = (status: string, code: ErrorCode, message: string): void => {
        warnUpgradeRefused({ code, path: req.getUrl() });
        res.cork(() => {
          res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: { code, message } }));
        });
      };
      const refused = gateway.admissionError();
      if (refused) {
        metrics.streamsRefused.inc({ source, reason: refused.code });
        refuse(refused.code === ErrorCode.SpoolFull ? '507 Insufficient Storage' : '503 Service Unavailable', refused.code, refused.message);
        return;
      }
      let account: TwilioAccount | null = null;
      if (twilio.validateSignatures) {
        const url = streamUrlForSignature(gateway.publicUrl, pathAndQuery);
        account = identifyTwilioAccount(accounts, signature, url);
        if (!account) {
          refuse('403 Forbidden', ErrorCode.SignatureInvalid, 'the stream signature does not match any configured account');
          return;
        }
        if (!gateway.streamSlotFree(account.accountSid)) {
          metrics.streamsRefused.inc({ source, reason: ErrorCode.StreamLimitReached });
          refuse('429 Too Many Requests', ErrorCode.StreamLimitReached, 'the account has MAX_STREAMS_PER_ACCOUNT streams open');
          return;
        }
      }
      // A stream token binds the stream to one call and an expiry (see stream-token.ts); checked before any audio.
      const token = new URLSearchParams(req.getQuery() ?? '').get(STREAM_TOKEN_PARAMETER);
      let tokenCallSid: string | undefined;
      if (token !== null) {
        try {
          tokenCallSid = verifyStreamToken(token, gateway.options.keyring.all.values(), now(), maxTokenLifetimeMs).callSid;
        } catch (err) {
          const error = toCallvaultError(err);
          metrics.streamsRefused.inc({ source: 'twilio', reason: error.code });
          refuse('403 Forbidden', error.code, error.message);
          return;
        }
      } else if (account && tokenRequired(account.org)) {
        metrics.streamsRefused.inc({ source: 'twilio', reason: ErrorCode.StreamTokenInvalid });
        refuse('403 Forbidden', ErrorCode.StreamTokenInvalid, 'this organisation requires a stream token');
        return;
      }
      const data: SocketData = { account, ...(tokenCallSid ? { tokenCallSid } : {}), early: [], earlyArrivals: [], open: false, closing: false };
      res.upgrade(data, key, protocol, extensions, context);
    },

    open: (ws) => {
      const data = ws.getUserData();
      data.open = true;
      metrics.activeStreams.inc({ source });
      data.untrack = gateway.trackSocket((code) => closeSocket(ws, code, ErrorCode.ShuttingDown));
      if (data.account) {
        const release = gateway.acquireStreamSlot(data.account.accountSid);
        if (!release) {
          // Checked at upgrade; only a race between upgrade and open lands here.
          metrics.streamsRefused.inc({ source, reason: ErrorCode.StreamLimitReached });
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
        metrics.streamsRefused.inc({ source, reason: ErrorCode.StreamStartTimeout });
        closeSocket(ws, code, ErrorCode.StreamStartTimeout);
      }, startTimeoutMs);
      data.session = new TwilioStreamSession(
        { now, maxAheadOfClockMs: twilio.maxAheadOfClockMs, expectedAccountSid: data.account?.accountSid ?? null, dialect: flavour.dialect },
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
      metrics.activeStreams.dec({ source });
      metrics.streamsClosed.inc({ source, code: String(code) });
      if (!data.closing && code === 1006) {
        logger.warn({ closeCode: code, callSid: data.callSid, streamSid: data.streamSid }, 'twilio stream dropped');
      }
      // Whatever ended the socket, the audio received so far is finalised, never dropped.
      void finalise(ws).catch((err: unknown) => logger.error({ callSid: data.callSid, err }, 'could not finalise call'));
    },
  });
}
