/**
 * Reading an ElevenLabs post-call delivery: the signature, the JSON, the schema, the base64 MP3 and its
 * description. A body is up to 32 MiB, so all of this runs on a worker thread (elevenlabs-worker.ts) and
 * never on the thread that serves live calls. Pure functions: the outcome is data, errors included, because
 * it crosses a thread boundary.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { describeMpegAudio, type MpegAudioInfo } from '../../audio/mpeg.js';
import type { ElevenLabsWebhookSecret } from '../../gateway/port.js';

/** ElevenLabs' own SDKs refuse signatures older than this; a captured delivery cannot be replayed later. */
export const ELEVENLABS_SIGNATURE_TOLERANCE_MS = 30 * 60 * 1000;

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

/** Turns per transcript and characters per turn the gateway keeps. */
export const ELEVENLABS_MAX_TURNS = 20_000;
export const ELEVENLABS_MAX_TURN_CHARS = 100_000;

/** One turn of `data.transcript`; ElevenLabs' other fields (tool calls, feedback, metrics…) pass through unread. */
const TranscriptTurn = z.looseObject({
  role: z.enum(['user', 'agent']),
  message: z.string().max(ELEVENLABS_MAX_TURN_CHARS).nullable().optional(),
  time_in_call_secs: z.number().nonnegative().finite(),
});

const PostCallTranscription = z.looseObject({
  type: z.literal('post_call_transcription'),
  event_timestamp: z.number().optional(),
  data: z.looseObject({
    agent_id: z.string().min(1).max(200),
    conversation_id: z.string().min(1).max(200),
    transcript: z.array(TranscriptTurn).max(ELEVENLABS_MAX_TURNS),
  }),
});

/** A turn as the main thread stores it: who spoke, when (seconds into the conversation), what. */
export interface PostCallTurn {
  role: 'user' | 'agent';
  timeInCallSecs: number;
  message: string;
}

type SignatureCheck = { ok: true; org: string } | { ok: false; reason: string };

/** A header longer than this is not ElevenLabs' (`t=` and a few `v0=` of 64 hex digits). */
const MAX_SIGNATURE_HEADER_LENGTH = 1024;

type SignatureHeader = { ok: true; timestamp: string; candidates: Buffer[] } | { ok: false; reason: string };

/**
 * The header's shape and timestamp alone, checked before a byte of the body is read: a delivery refused here
 * costs no memory, however large a body it declares.
 */
export function checkElevenLabsSignatureHeader(header: string | undefined, nowMs: number): SignatureHeader {
  if (!header) return { ok: false, reason: 'ElevenLabs-Signature header is missing' };
  if (header.length > MAX_SIGNATURE_HEADER_LENGTH) return { ok: false, reason: 'ElevenLabs-Signature is malformed' };
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
  return { ok: true, timestamp, candidates };
}

/** Tries every organisation's secret against every `v0`, each comparison in constant time. */
export function verifyElevenLabsSignature(
  header: string | undefined,
  rawBody: Uint8Array,
  secrets: readonly ElevenLabsWebhookSecret[],
  nowMs: number,
): SignatureCheck {
  const shape = checkElevenLabsSignatureHeader(header, nowMs);
  if (!shape.ok) return shape;
  const { timestamp, candidates } = shape;
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

/** Opaque ids and numbers as callers pass them in dynamic variables: short printable text only. */
const LINK_VALUE = /^[A-Za-z0-9+._:@|#*-]{1,200}$/;

function firstString(...values: unknown[]): string | undefined {
  return values.find((v): v is string => typeof v === 'string' && LINK_VALUE.test(v));
}

/** The `chat_id` the caller passed to ElevenLabs when it started the conversation (dynamic variables). */
function chatIdOf(data: Record<string, unknown>): string | undefined {
  const vars = at(data, 'conversation_initiation_client_data', 'dynamic_variables');
  return firstString(at(vars, 'chat_id'), at(vars, 'chatId'));
}

/** The number the conversation called, as the caller or ElevenLabs put it in the dynamic variables. */
function calledNumberOf(data: Record<string, unknown>): string | undefined {
  const vars = at(data, 'conversation_initiation_client_data', 'dynamic_variables');
  return firstString(at(vars, 'called_number'), at(vars, 'system__called_number'));
}

function startSecondsOf(data: Record<string, unknown>): number | undefined {
  const start = at(data, 'metadata', 'start_time_unix_secs');
  return typeof start === 'number' && Number.isFinite(start) && start > 0 ? start : undefined;
}

/** What the worker hands back: the outcome as data (a refusal and a bad request included). */
/** What every delivery that names a conversation says of it, and how to find its call. */
export interface PostCallConversation {
  org: string;
  conversationId: string;
  agentId: string;
  callSid?: string;
  /** The caller's own id for the conversation (`chat_id` dynamic variable): a callvault call id or CallSid. */
  chatId?: string;
  calledNumber?: string;
  startSeconds?: number;
  eventTimestamp?: number;
}

export type PostCallReading =
  | { kind: 'refused'; reason: string }
  | { kind: 'bad-request'; message: string; issues?: string[] }
  | { kind: 'ignored'; org: string; type: string }
  | (PostCallConversation & {
      kind: 'audio';
      /** The MP3 exactly as delivered. */
      audio: Uint8Array;
      mpeg: MpegAudioInfo;
    })
  | (PostCallConversation & {
      kind: 'transcript';
      /** The turns that carry text, in the order delivered. */
      turns: PostCallTurn[];
    });

export interface PostCallInput {
  raw: Uint8Array;
  signatureHeader: string | undefined;
  secrets: readonly ElevenLabsWebhookSecret[];
  nowMs: number;
}

/** Verifies, parses and decodes one delivery. */
export function readPostCall({ raw, signatureHeader, secrets, nowMs }: PostCallInput): PostCallReading {
  const check = verifyElevenLabsSignature(signatureHeader, raw, secrets, nowMs);
  if (!check.ok) return { kind: 'refused', reason: check.reason };
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    // The parser's message would quote the body: a secret-bearing payload must not reach a log.
    return { kind: 'bad-request', message: 'request body is not JSON' };
  }
  const envelope = Envelope.safeParse(body);
  if (!envelope.success) return { kind: 'bad-request', message: 'request body has no event type' };
  if (envelope.data.type === 'post_call_transcription') return readTranscription(check.org, body);
  if (envelope.data.type !== 'post_call_audio') return { kind: 'ignored', org: check.org, type: envelope.data.type };
  const parsed = PostCallAudio.safeParse(body);
  if (!parsed.success) {
    return {
      kind: 'bad-request',
      message: 'post_call_audio payload is invalid',
      issues: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`),
    };
  }
  const { data } = parsed.data;
  const compact = data.full_audio.replace(/\s+/g, '');
  if (compact.length % 4 === 1 || !BASE64.test(compact)) return { kind: 'bad-request', message: 'data.full_audio is not base64' };
  const audio = Buffer.from(compact, 'base64');
  if (audio.length === 0) return { kind: 'bad-request', message: 'data.full_audio is empty' };
  return {
    kind: 'audio',
    ...conversationOf(check.org, data, parsed.data.event_timestamp),
    // Its own memory (not a slice of Buffer's shared pool), so it can be moved to the main thread, not copied.
    audio: audio.byteOffset === 0 && audio.byteLength === audio.buffer.byteLength ? audio : Uint8Array.from(audio),
    mpeg: describeMpegAudio(audio),
  };
}

/** The conversation's ids and links, as every delivery type carries them. */
function conversationOf(org: string, data: Record<string, unknown> & { agent_id: string; conversation_id: string }, eventTimestamp: number | undefined): PostCallConversation {
  const callSid = callSidOf(data);
  const chatId = chatIdOf(data);
  const calledNumber = calledNumberOf(data);
  const startSeconds = startSecondsOf(data);
  return {
    org,
    conversationId: data.conversation_id,
    agentId: data.agent_id,
    ...(callSid ? { callSid } : {}),
    ...(chatId ? { chatId } : {}),
    ...(calledNumber ? { calledNumber } : {}),
    ...(startSeconds === undefined ? {} : { startSeconds }),
    ...(eventTimestamp === undefined ? {} : { eventTimestamp }),
  };
}

/** `post_call_transcription`: the conversation's turns with their time in call; turns without text are left out. */
function readTranscription(org: string, body: unknown): PostCallReading {
  const parsed = PostCallTranscription.safeParse(body);
  if (!parsed.success) {
    return {
      kind: 'bad-request',
      message: 'post_call_transcription payload is invalid',
      issues: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`),
    };
  }
  const { data } = parsed.data;
  const turns: PostCallTurn[] = [];
  for (const turn of data.transcript) {
    const message = turn.message?.trim();
    if (message) turns.push({ role: turn.role, timeInCallSecs: turn.time_in_call_secs, message });
  }
  return { kind: 'transcript', ...conversationOf(org, data, parsed.data.event_timestamp), turns };
}
