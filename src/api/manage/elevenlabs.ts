/**
 * `POST /webhooks/elevenlabs-post-call`: ElevenLabs' post-call webhook. Authenticated by
 * `ElevenLabs-Signature: t=<unix s>,v0=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` with the secret of one of
 * the configured organisations (the one that matches owns the delivery). `post_call_audio` carries the whole
 * conversation as base64 MP3: it is stored undecoded, encrypted, linked to the Twilio call when the payload
 * names its CallSid, else to a call keyed by the conversation id. Any other event type answers 200 and is
 * ignored, so ElevenLabs keeps the webhook enabled.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { describeMpegAudio } from '../../audio/mpeg.js';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import type { Call } from '../../db/index.js';
import type { ElevenLabsWebhookSecret, GatewayPort } from '../../gateway/port.js';
import { json, type HttpResult, type RequestContext, type Router } from '../../http/http.js';
import { agentRecordingOptions, layerRecordingOptions } from '../../gateway/port.js';

export const ELEVENLABS_POST_CALL_WEBHOOK_PATH = '/webhooks/elevenlabs-post-call';
/** ElevenLabs' own SDKs refuse signatures older than this; a captured delivery cannot be replayed later. */
export const ELEVENLABS_SIGNATURE_TOLERANCE_MS = 30 * 60 * 1000;
/** A long conversation's MP3, base64-encoded, in one JSON body (about 25 minutes at 128 kbit/s). */
export const ELEVENLABS_MAX_BODY_BYTES = 32 * 1024 * 1024;

const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const Envelope = z.looseObject({ type: z.string() });
const PostCallAudio = z.looseObject({
  type: z.literal('post_call_audio'),
  event_timestamp: z.number().optional(),
  data: z.looseObject({
    agent_id: z.string().min(1).max(200),
    conversation_id: z.string().min(1).max(200),
    full_audio: z.string().min(1),
  }),
});

function refused(message: string): HttpResult {
  return json(401, { error: { code: ErrorCode.SignatureInvalid, message } });
}

type SignatureCheck = { ok: true; org: string } | { ok: false; reason: string };

/** Tries every organisation's secret against every `v0`, each comparison in constant time. */
export function verifyElevenLabsSignature(
  header: string | undefined,
  rawBody: Uint8Array,
  secrets: readonly ElevenLabsWebhookSecret[],
  nowMs: number,
): SignatureCheck {
  if (!header) return { ok: false, reason: 'ElevenLabs-Signature header is missing' };
  let timestamp: string | undefined;
  const candidates: Buffer[] = [];
  for (const part of header.split(',')) {
    const i = part.indexOf('=');
    const name = part.slice(0, i).trim();
    const value = part.slice(i + 1).trim();
    if (name === 't') timestamp = value;
    else if (name === 'v0' && /^[0-9a-fA-F]{64}$/.test(value)) candidates.push(Buffer.from(value, 'hex'));
  }
  if (!timestamp || !/^\d{1,12}$/.test(timestamp) || candidates.length === 0) {
    return { ok: false, reason: 'ElevenLabs-Signature is malformed' };
  }
  const skewMs = nowMs - Number(timestamp) * 1000;
  if (skewMs > ELEVENLABS_SIGNATURE_TOLERANCE_MS) return { ok: false, reason: 'ElevenLabs-Signature timestamp is too old' };
  if (-skewMs > ELEVENLABS_SIGNATURE_TOLERANCE_MS) return { ok: false, reason: 'ElevenLabs-Signature timestamp is in the future' };
  let org: string | undefined;
  // No early exit: the time taken does not depend on which secret, if any, matched.
  for (const { org: candidateOrg, secret } of secrets) {
    const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest();
    for (const candidate of candidates) {
      if (timingSafeEqual(expected, candidate) && org === undefined) org = candidateOrg;
    }
  }
  return org === undefined ? { ok: false, reason: 'ElevenLabs-Signature does not match any configured secret' } : { ok: true, org };
}

function at(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** The Twilio CallSid ElevenLabs passes along for phone conversations, where the payload has one. */
function callSidOf(data: Record<string, unknown>): string | undefined {
  const candidates = [
    at(data, 'metadata', 'phone_call', 'call_sid'),
    at(data, 'conversation_initiation_client_data', 'dynamic_variables', 'system__call_sid'),
  ];
  return candidates.find((c): c is string => typeof c === 'string' && CALL_SID.test(c));
}

function startOf(data: Record<string, unknown>, fallbackMs: number): Date {
  const start = at(data, 'metadata', 'start_time_unix_secs');
  return typeof start === 'number' && Number.isFinite(start) && start > 0 ? new Date(start * 1000) : new Date(fallbackMs);
}

/**
 * The call this conversation belongs to: the Twilio call with its CallSid, else the conversation's own call.
 * A call the gateway never saw is created already ended, like Twilio-side imports do.
 */
async function callFor(gateway: GatewayPort, orgId: string, conversationId: string, callSid: string | undefined, startedAt: Date, agentId: string): Promise<Call> {
  const { db } = gateway;
  const source = callSid ? 'twilio' : 'elevenlabs';
  const externalId = callSid ?? conversationId;
  const known = await db.calls.getByExternalId(orgId, externalId, source);
  if (known) return known;
  const created = await db.calls.upsertActive({
    orgId,
    source,
    externalId,
    startedAt,
    metadata: { elevenlabsConversationId: conversationId, elevenlabsAgentId: agentId },
  });
  return db.calls.end(created.id, new Date(gateway.now()));
}

function decodeAudio(base64: string): Buffer {
  const compact = base64.replace(/\s+/g, '');
  if (compact.length % 4 === 1 || !BASE64.test(compact)) throw new CallvaultError(ErrorCode.BadRequest, 'data.full_audio is not base64');
  const bytes = Buffer.from(compact, 'base64');
  if (bytes.length === 0) throw new CallvaultError(ErrorCode.BadRequest, 'data.full_audio is empty');
  return bytes;
}

async function handlePostCall(gateway: GatewayPort, ctx: RequestContext): Promise<HttpResult> {
  const { logger } = gateway.options;
  const { db } = gateway;
  const raw = await ctx.readBody();
  const check = verifyElevenLabsSignature(ctx.headers.get('elevenlabs-signature'), raw, gateway.options.elevenlabs?.webhookSecrets ?? [], gateway.now());
  if (!check.ok) {
    logger.warn({ reason: check.reason }, 'elevenlabs webhook refused');
    return refused(check.reason);
  }
  const orgId = check.org;
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (cause) {
    throw new CallvaultError(ErrorCode.BadRequest, 'request body is not JSON', { cause });
  }
  const envelope = Envelope.safeParse(body);
  if (!envelope.success) throw new CallvaultError(ErrorCode.BadRequest, 'request body has no event type');
  if (envelope.data.type !== 'post_call_audio') {
    logger.info({ orgId, type: envelope.data.type }, 'elevenlabs webhook event ignored');
    return json(200, { success: true, outcome: 'ignored', type: envelope.data.type });
  }
  const parsed = PostCallAudio.safeParse(body);
  if (!parsed.success) {
    throw new CallvaultError(ErrorCode.BadRequest, 'post_call_audio payload is invalid', {
      details: { issues: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`) },
    });
  }
  const { data } = parsed.data;
  const conversationId = data.conversation_id;
  const agentId = data.agent_id;

  const already = await db.imports.findByExternalSid(orgId, 'elevenlabs', conversationId);
  if (already) return json(200, { success: true, outcome: 'duplicate', recordingSid: already.recordingSid });

  const agent = await agentRecordingOptions(db, gateway.options.keyring, orgId, agentId);
  const options = layerRecordingOptions(gateway.options.recording.defaults, agent, undefined);
  if (!options.enabled) {
    logger.info({ orgId, conversationId, agentId }, 'elevenlabs conversation not recorded: recording disabled');
    return json(200, { success: true, outcome: 'disabled' });
  }

  const audio = decodeAudio(data.full_audio);
  const mpeg = describeMpegAudio(audio);
  const callSid = callSidOf(data);
  const startedAt = startOf(data, gateway.now());
  const call = await callFor(gateway, orgId, conversationId, callSid, startedAt, agentId);
  const result = await gateway.storeFinishedRecording({
    orgId,
    callId: call.id,
    callExternalId: callSid ?? conversationId,
    source: 'elevenlabs',
    externalSid: conversationId,
    options,
    audio: { format: 'mp3', bytes: audio, sampleRate: mpeg.sampleRate, channels: mpeg.channels, durationMs: mpeg.durationMs },
    startedAt,
    metadata: {
      elevenlabsConversationId: conversationId,
      elevenlabsAgentId: agentId,
      ...(callSid ? { callSid } : {}),
      ...(parsed.data.event_timestamp === undefined ? {} : { eventTimestamp: parsed.data.event_timestamp }),
      mp3: { bytes: audio.length, frames: mpeg.frames, sampleRate: mpeg.sampleRate, channels: mpeg.channels, durationMs: mpeg.durationMs },
      recordingOptions: { keyMode: options.key ? 'client' : 'server' },
    },
  });
  return json(200, { success: true, outcome: result.outcome, recordingSid: result.recordingSid, status: result.status });
}

export function registerElevenLabsRoutes(router: Router, gateway: GatewayPort): void {
  // Unsigned deliveries are buffered before their signature can be checked: with no secret configured every
  // delivery is refused anyway, so nothing large is read at all.
  const configured = (gateway.options.elevenlabs?.webhookSecrets.length ?? 0) > 0;
  router.route('post', ELEVENLABS_POST_CALL_WEBHOOK_PATH, 'webhook_elevenlabs_post_call', (ctx) => handlePostCall(gateway, ctx), {
    maxBodyBytes: configured ? ELEVENLABS_MAX_BODY_BYTES : 64 * 1024,
  });
}
