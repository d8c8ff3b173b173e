/**
 * `POST /webhooks/elevenlabs-post-call`: ElevenLabs' post-call webhook. Authenticated by
 * `ElevenLabs-Signature: t=<unix s>,v0=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` with the secret of one of
 * the configured organisations (the one that matches owns the delivery). `post_call_audio` carries the whole
 * conversation as base64 MP3: it is stored undecoded, encrypted, linked to the Twilio call when the payload
 * names its CallSid, else to a call keyed by the conversation id. `post_call_transcription` stores the
 * conversation's turns as the linked call's transcript. Any other event type answers 200 and is ignored, so
 * ElevenLabs keeps the webhook enabled.
 */
import { Worker } from 'node:worker_threads';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import type { Call } from '../../db/index.js';
import type { GatewayPort } from '../../gateway/port.js';
import { json, type HttpResult, type Router } from '../../http/http.js';
import { rateLimitedWarn } from '../../log/index.js';
import { agentRecordingOptions, layerRecordingOptions } from '../../gateway/port.js';
import type { PostCallInput, PostCallReading } from './elevenlabs-body.js';
import type { TranscriptEntryInput } from '../../db/index.js';

import { checkElevenLabsSignatureHeader } from './elevenlabs-body.js';

export { ELEVENLABS_SIGNATURE_TOLERANCE_MS, checkElevenLabsSignatureHeader, verifyElevenLabsSignature } from './elevenlabs-body.js';

export const ELEVENLABS_POST_CALL_WEBHOOK_PATH = '/webhooks/elevenlabs-post-call';
/** A long conversation's MP3, base64-encoded, in one JSON body (about 25 minutes at 128 kbit/s). */
export const ELEVENLABS_MAX_BODY_BYTES = 32 * 1024 * 1024;
/** Deliveries read at once (at most 8 × 32 MiB buffered); more answer 503 with Retry-After before being read. */
export const ELEVENLABS_MAX_CONCURRENT_DELIVERIES = 8;

function refused(message: string): HttpResult {
  return json(401, { error: { code: ErrorCode.SignatureInvalid, message } });
}

/** How far back a delivery matched by its called number looks for the call (the conversation just ended). */
export const ELEVENLABS_NUMBER_MATCH_LOOKBACK_MS = 24 * 60 * 60 * 1000;

interface CallLink {
  conversationId: string;
  agentId: string;
  callSid?: string | undefined;
  chatId?: string | undefined;
  calledNumber?: string | undefined;
}

/**
 * The call this conversation belongs to, first match wins: the call the caller's `chat_id` names (a callvault
 * call id, or a call's CallSid / external id), the Twilio call whose CallSid the payload carries, the
 * organisation's latest call to `called_number` (tagged `calledNumber`) that has no recording yet, and else the
 * conversation's own call. A call the gateway never saw is created already ended, like Twilio-side imports do.
 */
async function callFor(gateway: GatewayPort, orgId: string, link: CallLink, startedAt: Date): Promise<{ call: Call; linkedBy: string }> {
  const { db } = gateway;
  if (link.chatId) {
    const byId = await db.calls.get(orgId, link.chatId);
    const chat = byId ?? (await db.calls.getByExternalId(orgId, link.chatId));
    if (chat) return { call: chat, linkedBy: 'chat_id' };
  }
  const source = link.callSid ? 'twilio' : 'elevenlabs';
  const externalId = link.callSid ?? link.conversationId;
  const known = await db.calls.getByExternalId(orgId, externalId, source);
  if (known) return { call: known, linkedBy: link.callSid ? 'call_sid' : 'conversation_id' };
  if (!link.callSid && link.calledNumber) {
    const since = new Date(gateway.now() - ELEVENLABS_NUMBER_MATCH_LOOKBACK_MS);
    const byNumber = await db.imports.latestUnrecordedCallTo(orgId, link.calledNumber, since);
    if (byNumber) return { call: byNumber, linkedBy: 'called_number' };
  }
  const created = await db.calls.upsertActive({
    orgId,
    source,
    externalId,
    startedAt,
    metadata: { elevenlabsConversationId: link.conversationId, elevenlabsAgentId: link.agentId, ...(link.calledNumber ? { calledNumber: link.calledNumber } : {}) },
  });
  return { call: await db.calls.end(created.id, new Date(gateway.now())), linkedBy: link.callSid ? 'call_sid' : 'conversation_id' };
}

/** One worker thread for deliveries (they are rare and each is one big job), started on the first. */
type Reader = (input: PostCallInput) => Promise<PostCallReading>;

async function handlePostCall(gateway: GatewayPort, read: Reader, raw: Buffer, signatureHeader: string | undefined): Promise<HttpResult> {
  const { logger } = gateway.options;
  const { db } = gateway;
  const reading = await read({ raw, signatureHeader, secrets: gateway.options.elevenlabs?.webhookSecrets ?? [], nowMs: gateway.now() });
  if (reading.kind === 'refused') {
    logger.warn({ reason: reading.reason }, 'elevenlabs webhook refused');
    return refused(reading.reason);
  }
  if (reading.kind === 'bad-request') {
    throw new CallvaultError(ErrorCode.BadRequest, reading.message, reading.issues ? { details: { issues: reading.issues } } : {});
  }
  const orgId = reading.org;
  if (reading.kind === 'ignored') {
    logger.info({ orgId, type: reading.type }, 'elevenlabs webhook event ignored');
    return json(200, { success: true, outcome: 'ignored', type: reading.type });
  }
  if (reading.kind === 'transcript') return storeTranscript(gateway, reading);
  const { conversationId, agentId, callSid, chatId, calledNumber, audio, mpeg } = reading;

  const already = await db.imports.findByExternalSid(orgId, 'elevenlabs', conversationId);
  if (already) return json(200, { success: true, outcome: 'duplicate', recordingSid: already.recordingSid });

  const agent = await agentRecordingOptions(db, gateway.options.keyring, orgId, agentId);
  const options = layerRecordingOptions(gateway.options.recording.defaults, agent, undefined);
  if (!options.enabled) {
    logger.info({ orgId, conversationId, agentId }, 'elevenlabs conversation not recorded: recording disabled');
    return json(200, { success: true, outcome: 'disabled' });
  }

  const startedAt = reading.startSeconds === undefined ? new Date(gateway.now()) : new Date(reading.startSeconds * 1000);
  const { call, linkedBy } = await callFor(gateway, orgId, { conversationId, agentId, callSid, chatId, calledNumber }, startedAt);
  const result = await gateway.storeFinishedRecording({
    orgId,
    callId: call.id,
    callExternalId: call.externalId,
    source: 'elevenlabs',
    externalSid: conversationId,
    options,
    audio: { format: 'mp3', bytes: audio, sampleRate: mpeg.sampleRate, channels: mpeg.channels, durationMs: mpeg.durationMs },
    startedAt,
    metadata: {
      elevenlabsConversationId: conversationId,
      elevenlabsAgentId: agentId,
      ...(callSid ? { callSid } : {}),
      ...(chatId ? { chatId } : {}),
      ...(calledNumber ? { calledNumber } : {}),
      linkedBy,
      ...(reading.eventTimestamp === undefined ? {} : { eventTimestamp: reading.eventTimestamp }),
      mp3: { bytes: audio.length, frames: mpeg.frames, sampleRate: mpeg.sampleRate, channels: mpeg.channels, durationMs: mpeg.durationMs },
      recordingOptions: { keyMode: options.key ? 'client' : 'server' },
    },
  });
  return json(200, { success: true, outcome: result.outcome, recordingSid: result.recordingSid, status: result.status });
}

type TranscriptReading = Extract<PostCallReading, { kind: 'transcript' }>;

/**
 * `post_call_transcription`: the turns become the linked call's transcript entries, once per conversation. The
 * call is the one the conversation's stored audio went to (ElevenLabs may deliver either first), else the
 * same links as the audio's.
 */
async function storeTranscript(gateway: GatewayPort, reading: TranscriptReading): Promise<HttpResult> {
  const { db } = gateway;
  const { logger } = gateway.options;
  const { org: orgId, conversationId, agentId, callSid, chatId, calledNumber } = reading;
  const agent = await agentRecordingOptions(db, gateway.options.keyring, orgId, agentId);
  const options = layerRecordingOptions(gateway.options.recording.defaults, agent, undefined);
  if (!options.enabled) {
    logger.info({ orgId, conversationId, agentId }, 'elevenlabs transcript not stored: recording disabled');
    return json(200, { success: true, outcome: 'disabled' });
  }
  const startedAt = reading.startSeconds === undefined ? undefined : new Date(reading.startSeconds * 1000);
  let linked: { call: Call; linkedBy: string } | undefined;
  const imported = await db.imports.findByExternalSid(orgId, 'elevenlabs', conversationId);
  const importedCallId = imported ? (await db.recordings.get(orgId, imported.id))?.callId : null;
  const importedCall = importedCallId ? await db.calls.get(orgId, importedCallId) : null;
  if (importedCall) linked = { call: importedCall, linkedBy: 'recording' };
  linked ??= await callFor(gateway, orgId, { conversationId, agentId, callSid, chatId, calledNumber }, startedAt ?? new Date(gateway.now()));
  const { call, linkedBy } = linked;
  // time_in_call_secs counts from the conversation's start; without one, from the call's.
  const originMs = (startedAt ?? call.startedAt).getTime();
  const entries: TranscriptEntryInput[] = reading.turns.map((turn) => ({
    timestamp: new Date(originMs + Math.round(turn.timeInCallSecs * 1000)).toISOString(),
    channel: turn.role === 'user' ? 'caller' : 'bot',
    type: turn.role === 'user' ? 'input' : 'output',
    text: turn.message,
    confidence: null,
    durationMs: null,
  }));
  const result = await db.artifacts.importTranscript(orgId, 'elevenlabs', conversationId, call.id, entries);
  if (!result.claimed) return json(200, { success: true, outcome: 'duplicate' });
  logger.info({ orgId, conversationId, callId: call.id, entries: result.stored, linkedBy }, 'elevenlabs transcript stored');
  return json(200, { success: true, outcome: 'stored', callId: call.externalId, entries: result.stored, linkedBy });
}

export function registerElevenLabsRoutes(router: Router, gateway: GatewayPort): void {
  // Unsigned deliveries are buffered before their signature can be checked: with no secret configured every
  // delivery is refused anyway, so nothing large is read at all.
  const configured = (gateway.options.elevenlabs?.webhookSecrets.length ?? 0) > 0;
  const workers = new Set<Worker>();
  // One worker thread per delivery: deliveries are rare and each is one big job.
  const read: Reader = (input) =>
    new Promise<PostCallReading>((resolve, reject) => {
      const worker = new Worker(new URL('./elevenlabs-worker.js', import.meta.url));
      workers.add(worker);
      let settled = false;
      worker.once('message', (reading: PostCallReading) => {
        settled = true;
        resolve(reading);
        void worker.terminate();
      });
      worker.once('error', (err) => {
        settled = true;
        reject(new CallvaultError(ErrorCode.Internal, 'the ElevenLabs delivery could not be read', { cause: err }));
      });
      worker.once('exit', (code) => {
        workers.delete(worker);
        if (!settled) reject(new CallvaultError(ErrorCode.Internal, 'the ElevenLabs delivery reader stopped', { details: { exitCode: code } }));
      });
      // A body that owns its memory is moved to the worker, not copied.
      const owned = input.raw.byteOffset === 0 && input.raw.byteLength === input.raw.buffer.byteLength && input.raw.byteLength > 64 * 1024;
      worker.postMessage(input, owned ? [input.raw.buffer as ArrayBuffer] : []);
    });
  gateway.signal.addEventListener(
    'abort',
    () => {
      for (const worker of workers) void worker.terminate();
    },
    { once: true },
  );
  const refusals = rateLimitedWarn(gateway.options.logger, 'elevenlabs webhook refused');
  const overloads = rateLimitedWarn(gateway.options.logger, 'elevenlabs webhook busy');
  // Deliveries whose body is being read or processed: each may hold up to 32 MiB until its signature is checked.
  let inFlight = 0;
  router.route(
    'post',
    ELEVENLABS_POST_CALL_WEBHOOK_PATH,
    'webhook_elevenlabs_post_call',
    async (ctx) => {
      inFlight += 1;
      try {
        return await handlePostCall(gateway, read, await ctx.readBody(), ctx.headers.get('elevenlabs-signature'));
      } finally {
        inFlight -= 1;
      }
    },
    {
      maxBodyBytes: configured ? ELEVENLABS_MAX_BODY_BYTES : 64 * 1024,
      // A missing, malformed or stale signature header is refused before the body (up to 32 MiB) is read, and so is
      // a delivery beyond ELEVENLABS_MAX_CONCURRENT_DELIVERIES (503, ElevenLabs retries): memory stays bounded.
      precheck: (headers) => {
        const shape = checkElevenLabsSignatureHeader(headers.get('elevenlabs-signature'), gateway.now());
        if (!shape.ok) {
          refusals({ reason: shape.reason, bodyRead: false });
          return refused(shape.reason);
        }
        if (inFlight >= ELEVENLABS_MAX_CONCURRENT_DELIVERIES) {
          overloads({ code: ErrorCode.Overloaded, inFlight });
          return json(503, { error: { code: ErrorCode.Overloaded, message: 'too many deliveries in progress, retry later' } }, { 'retry-after': '5' });
        }
        return null;
      },
    },
  );
}
