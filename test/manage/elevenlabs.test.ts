/**
 * ElevenLabs' post-call webhook against a real gateway: signed like ElevenLabs signs (HMAC-SHA256 over
 * "<t>.<raw body>"), the MP3 stored undecoded and encrypted, served back byte for byte, linked to its call,
 * once per conversation, under the agent's policy. The MP3 is a run of real MPEG frame headers (MPEG-1
 * Layer III unless a case says otherwise) with random frame bodies: the gateway never decodes audio, it only
 * reads those headers for rate, channels and duration, and treats the bytes as opaque.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { describeMpegAudio } from '../../dist/audio/mpeg.js';
import { decryptRecordingToWav, parseHeader } from '../../dist/crypto/index.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { s3Client } from '../support/peers.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { apiJson, elevenLabsSignature, mpegFrames } from './support.js';

const ACME_SECRET = `wsec_${randomBytes(24).toString('hex')}`;
const GLOBEX_SECRET = `wsec_${randomBytes(24).toString('hex')}`;
/** The gateway's clock: fixed, so signature ages are exact. */
const NOW_MS = Math.floor(Date.now() / 1000) * 1000;
const nowSeconds = Math.floor(NOW_MS / 1000);
const CLIENT_KEY = randomBytes(32).toString('base64');

/** MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono, no padding: 417-byte frames of 1152 samples. */
const MPEG1_L3_44K_MONO = { header: [0xff, 0xfb, 0x90, 0xc0], length: 417, samples: 1152, sampleRate: 44100, channels: 1 };
/** MPEG-2 Layer III, 64 kbit/s, 22.05 kHz, stereo: 208-byte frames of 576 samples. */
const MPEG2_L3_22K_STEREO = { header: [0xff, 0xf3, 0x80, 0x00], length: 208, samples: 576, sampleRate: 22050, channels: 2 };

/** An ID3v2.4 tag of `size` bytes of body, as encoders put in front of MP3s. */
function id3v2(size: number): Buffer {
  const header = Buffer.from([0x49, 0x44, 0x33, 4, 0, 0, (size >> 21) & 0x7f, (size >> 14) & 0x7f, (size >> 7) & 0x7f, size & 0x7f]);
  return Buffer.concat([header, Buffer.alloc(size)]);
}

function sign(body: string, secret: string, timestamp = nowSeconds): string {
  return elevenLabsSignature(body, secret, timestamp);
}

interface AudioEvent {
  conversationId: string;
  agentId: string;
  audio: Buffer;
  extra?: Record<string, unknown>;
}

function audioEvent(e: AudioEvent): string {
  return JSON.stringify({
    type: 'post_call_audio',
    event_timestamp: nowSeconds,
    data: { agent_id: e.agentId, conversation_id: e.conversationId, full_audio: e.audio.toString('base64'), ...e.extra },
  });
}

let t: TestGateway;

function post(body: string, signature: string | null): Promise<Response> {
  return fetch(`${t.httpUrl}/webhooks/elevenlabs-post-call`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(signature === null ? {} : { 'elevenlabs-signature': signature }) },
    body,
  });
}

const newConversationId = () => `conv_${randomBytes(12).toString('hex')}`;
const newCallSid = () => `CA${randomBytes(16).toString('hex')}`;

async function storedFor(org: string, conversationId: string) {
  return t.gateway.db.imports.findByExternalSid(org, 'elevenlabs', conversationId);
}

async function recordingJson(sid: string, org = 'acme'): Promise<any> {
  const res = await apiJson(t, 'GET', `/api/call-recordings/${sid}`, undefined, org);
  expect(res.status).toBe(200);
  return ((await res.json()) as any).recording;
}

async function media(path: string, org = 'acme', range?: string): Promise<{ status: number; type: string | null; bytes: Buffer; headers: Headers }> {
  const res = await fetch(`${t.httpUrl}${path}`, {
    headers: { authorization: `Bearer ${t.gateway.options.apiKeys.find((k) => k.org === org)!.key}`, ...(range ? { range } : {}) },
    redirect: 'manual',
  });
  return { status: res.status, type: res.headers.get('content-type'), bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

beforeAll(async () => {
  t = await startTestGateway({
    now: () => NOW_MS,
    elevenlabs: {
      webhookSecrets: [
        { org: 'acme', secret: ACME_SECRET },
        { org: 'globex', secret: GLOBEX_SECRET },
      ],
    },
  });
});
afterAll(async () => {
  await t?.dispose();
});

describe('describeMpegAudio', () => {
  test.each([
    { name: 'MPEG-1 Layer III mono', kind: MPEG1_L3_44K_MONO, frames: 40, prefix: Buffer.alloc(0) },
    { name: 'MPEG-2 Layer III stereo', kind: MPEG2_L3_22K_STEREO, frames: 100, prefix: Buffer.alloc(0) },
    { name: 'behind an ID3v2 tag', kind: MPEG1_L3_44K_MONO, frames: 10, prefix: id3v2(300) },
  ])('$name: rate, channels and duration from the frame headers', ({ kind, frames, prefix }) => {
    const info = describeMpegAudio(Buffer.concat([prefix, mpegFrames(kind, frames), Buffer.from('TAG')]));
    expect(info).toEqual({
      sampleRate: kind.sampleRate,
      channels: kind.channels,
      frames,
      durationMs: Math.round((frames * kind.samples * 1000) / kind.sampleRate),
    });
  });

  test.each([
    { name: 'random bytes', bytes: Buffer.from(randomBytes(5000).map((b) => b & 0x7f)) },
    { name: 'a lone sync word', bytes: Buffer.concat([Buffer.from([0xff, 0xfb, 0x90, 0xc0]), Buffer.alloc(100)]) },
    { name: 'nothing', bytes: Buffer.alloc(0) },
  ])('$name: unknown', ({ bytes }) => {
    expect(describeMpegAudio(bytes)).toEqual({ sampleRate: 0, channels: 0, frames: 0, durationMs: 0 });
  });
});

describe('post_call_audio', () => {
  test.each([
    { where: 'data.metadata.phone_call.call_sid', extra: (sid: string) => ({ metadata: { phone_call: { call_sid: sid } } }) },
    {
      where: 'dynamic_variables.system__call_sid',
      extra: (sid: string) => ({ conversation_initiation_client_data: { dynamic_variables: { system__call_sid: sid } } }),
    },
    { where: 'nowhere (no CallSid: the conversation is the call)', extra: null },
  ])('CallSid in $where: stored once, linked, served back as the same MP3', async ({ extra }) => {
    const conversationId = newConversationId();
    const callSid = newCallSid();
    const audio = mpegFrames(MPEG1_L3_44K_MONO, 40);
    const body = audioEvent({ conversationId, agentId: 'agent_default', audio, ...(extra ? { extra: extra(callSid) } : {}) });
    const res = await post(body, sign(body, ACME_SECRET));
    expect(res.status).toBe(200);
    const answer = (await res.json()) as any;
    expect(answer).toMatchObject({ success: true, outcome: 'stored' });

    const recording = await recordingJson(answer.recordingSid);
    expect(recording).toMatchObject({
      status: 'completed',
      source: 'elevenlabs',
      format: 'mp3',
      container: 'cvr1',
      mediaType: 'audio',
      contentType: 'audio/mpeg',
      sampleRate: 44100,
      channels: 1,
      durationMs: Math.round((40 * 1152 * 1000) / 44100),
      keyMode: 'server',
      callSid: extra ? callSid : conversationId,
      metadata: { elevenlabsConversationId: conversationId, elevenlabsAgentId: 'agent_default' },
    });
    expect(recording.call).toMatchObject({ callSid: extra ? callSid : conversationId, source: extra ? 'twilio' : 'elevenlabs', status: 'ended' });

    const whole = await media(`/api/call-recordings/${answer.recordingSid}/media`);
    expect(whole.status).toBe(200);
    expect(whole.type).toBe('audio/mpeg');
    expect(whole.headers.get('content-disposition')).toBe(`inline; filename="${answer.recordingSid}.mp3"`);
    expect(whole.bytes.equals(audio)).toBe(true);

    const byCall = await media(`/calls/${recording.callSid}/recording`);
    expect(byCall.type).toBe('audio/mpeg');
    expect(byCall.bytes.equals(audio)).toBe(true);

    // At rest it is a container of sample format mp3, and the MP3 does not appear in it.
    const client = s3Client();
    try {
      const row = (await t.gateway.db.recordings.get('acme', recording.id))!;
      const object = await client.send(new GetObjectCommand({ Bucket: t.bucket, Key: row.objectKey }));
      const stored = Buffer.from(await object.Body!.transformToByteArray());
      expect(parseHeader(stored).header).toMatchObject({ sampleFormat: 'mp3', sampleRate: 44100, channels: 1, keyMode: 'server' });
      expect(stored.includes(audio.subarray(4, 64))).toBe(false);
    } finally {
      client.destroy();
    }
  });

  test.each([
    { range: 'bytes=0-3', start: 0, end: 3 },
    { range: 'bytes=417-833', start: 417, end: 833 },
    { range: 'bytes=16380-16400', start: 16380, end: 16400 },
    { range: 'bytes=-10', start: 40 * 417 - 10, end: 40 * 417 - 1 },
  ])('Range $range: 206 with exactly those MP3 bytes (no WAV header before them)', async ({ range, start, end }) => {
    const conversationId = newConversationId();
    // 16680 bytes: two container segments (16384 + 296), so ranges cross a segment boundary.
    const audio = mpegFrames(MPEG1_L3_44K_MONO, 40);
    const body = audioEvent({ conversationId, agentId: 'agent_default', audio });
    const { recordingSid } = (await (await post(body, sign(body, ACME_SECRET))).json()) as any;
    const part = await media(`/api/call-recordings/${recordingSid}/media`, 'acme', range);
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes ${start}-${end}/${audio.length}`);
    expect(part.bytes.equals(audio.subarray(start, end + 1))).toBe(true);
    const past = await media(`/api/call-recordings/${recordingSid}/media`, 'acme', `bytes=${audio.length}-`);
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${audio.length}`);
  });

  test('bytes that are not MPEG are stored and served as they are, rate and channels 0 (unknown)', async () => {
    const audio = randomBytes(3000);
    audio[0] = 0; // never a sync word at the start
    const body = audioEvent({ conversationId: newConversationId(), agentId: 'agent_default', audio });
    const { recordingSid } = (await (await post(body, sign(body, ACME_SECRET))).json()) as any;
    expect(await recordingJson(recordingSid)).toMatchObject({ format: 'mp3', sampleRate: 0, channels: 0, durationMs: 0 });
    expect((await media(`/api/call-recordings/${recordingSid}/media`)).bytes.equals(audio)).toBe(true);
  });

  test('a signature exactly 30 minutes old is still accepted', async () => {
    const conversationId = newConversationId();
    const body = audioEvent({ conversationId, agentId: 'agent_default', audio: mpegFrames(MPEG1_L3_44K_MONO, 2) });
    const res = await post(body, sign(body, ACME_SECRET, nowSeconds - 30 * 60));
    expect(res.status).toBe(200);
    expect(await storedFor('acme', conversationId)).not.toBeNull();
  });
});

/** ElevenLabs' turns: user and agent, with their time in call; a tool-call turn carries no message. */
const TURNS = [
  { role: 'agent', message: 'Hello, this is the bistro. How can I help?', time_in_call_secs: 0 },
  { role: 'user', message: 'I would like a table for two.', time_in_call_secs: 3.25 },
  { role: 'agent', message: null, time_in_call_secs: 5, tool_calls: [{ tool_name: 'book_table' }] },
  { role: 'agent', message: 'Done: eight o\'clock, for two.', time_in_call_secs: 6.5, feedback: null },
  { role: 'user', message: '  Thanks!  ', time_in_call_secs: 9 },
];
const START_SECONDS = nowSeconds - 120;

function transcriptionEvent(conversationId: string, extra: Record<string, unknown> = {}, turns: unknown = TURNS): string {
  return JSON.stringify({
    type: 'post_call_transcription',
    event_timestamp: nowSeconds,
    data: {
      agent_id: 'agent_default',
      conversation_id: conversationId,
      status: 'done',
      transcript: turns,
      metadata: { start_time_unix_secs: START_SECONDS, call_duration_secs: 10, ...((extra['metadata'] as object | undefined) ?? {}) },
      analysis: { call_successful: 'success', transcript_summary: 'A table for two.' },
      ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'metadata')),
    },
  });
}

async function transcriptOf(callId: string, org = 'acme'): Promise<{ status: number; json: any }> {
  const res = await apiJson(t, 'GET', `/calls/${callId}/transcript`, undefined, org);
  return { status: res.status, json: await res.json() };
}

const at = (offsetS: number) => new Date(START_SECONDS * 1000 + offsetS * 1000).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

/** The entries TURNS become: user → caller/input, agent → bot/output, each at the conversation's start plus its offset. */
const EXPECTED_ENTRIES = [
  { timestamp: at(0), channel: 'bot', type: 'output', text: 'Hello, this is the bistro. How can I help?', confidence: null, duration_ms: null },
  { timestamp: at(3.25), channel: 'caller', type: 'input', text: 'I would like a table for two.', confidence: null, duration_ms: null },
  { timestamp: at(6.5), channel: 'bot', type: 'output', text: "Done: eight o'clock, for two.", confidence: null, duration_ms: null },
  { timestamp: at(9), channel: 'caller', type: 'input', text: 'Thanks!', confidence: null, duration_ms: null },
];

describe('post_call_transcription', () => {
  test.each([
    { where: 'the CallSid in data.metadata.phone_call', extra: (sid: string) => ({ metadata: { phone_call: { call_sid: sid } } }), linkedBy: 'call_sid' },
    { where: 'no link (the conversation is the call)', extra: null, linkedBy: 'conversation_id' },
  ])('linked by $where: the turns become the call\'s transcript, in time order', async ({ extra, linkedBy }) => {
    const conversationId = newConversationId();
    const callSid = newCallSid();
    const body = transcriptionEvent(conversationId, extra ? extra(callSid) : {});
    const res = await post(body, sign(body, ACME_SECRET));
    expect(res.status).toBe(200);
    const callId = extra ? callSid : conversationId;
    expect(await res.json()).toEqual({ success: true, outcome: 'stored', callId, entries: 4, linkedBy });
    const transcript = await transcriptOf(callId);
    expect(transcript.status).toBe(200);
    expect(transcript.json.entries).toEqual(EXPECTED_ENTRIES);
    // Another organisation's key does not see it.
    expect((await transcriptOf(callId, 'globex')).status).toBe(404);
  });

  test('the audio first, then the transcript: both on the same call; a transcript first, then the audio: the same', async () => {
    // Audio first: the transcript goes to the call the audio was stored for.
    const first = newConversationId();
    const audioBody = audioEvent({ conversationId: first, agentId: 'agent_default', audio: mpegFrames(MPEG1_L3_44K_MONO, 5) });
    const { recordingSid } = (await (await post(audioBody, sign(audioBody, ACME_SECRET))).json()) as any;
    const recording = await recordingJson(recordingSid);
    const body = transcriptionEvent(first);
    expect(await (await post(body, sign(body, ACME_SECRET))).json()).toMatchObject({ outcome: 'stored', callId: recording.callSid, linkedBy: 'recording' });
    expect((await transcriptOf(recording.callSid)).json.entries).toEqual(EXPECTED_ENTRIES);

    // Transcript first: the audio then finds the same call.
    const second = newConversationId();
    const tBody = transcriptionEvent(second);
    const stored = (await (await post(tBody, sign(tBody, ACME_SECRET))).json()) as any;
    const aBody = audioEvent({ conversationId: second, agentId: 'agent_default', audio: mpegFrames(MPEG1_L3_44K_MONO, 5) });
    const audio = (await (await post(aBody, sign(aBody, ACME_SECRET))).json()) as any;
    expect((await recordingJson(audio.recordingSid)).callSid).toBe(stored.callId);
    expect((await transcriptOf(stored.callId)).json.entries).toEqual(EXPECTED_ENTRIES);
  });

  test('without a start time the offsets count from the linked call\'s start', async () => {
    const conversationId = newConversationId();
    const body = JSON.stringify({
      type: 'post_call_transcription',
      data: { agent_id: 'agent_default', conversation_id: conversationId, transcript: [{ role: 'user', message: 'Hi', time_in_call_secs: 1.5 }] },
    });
    expect((await (await post(body, sign(body, ACME_SECRET))).json()) as any).toMatchObject({ outcome: 'stored', entries: 1 });
    const transcript = (await transcriptOf(conversationId)).json;
    expect(transcript.entries).toEqual([{ timestamp: new Date(Date.parse(transcript.start_time) + 1500).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'), channel: 'caller', type: 'input', text: 'Hi', confidence: null, duration_ms: null }]);
    expect(Date.parse(transcript.start_time)).toBe(NOW_MS);
  });

  test('concurrent duplicate deliveries and a later retry store the transcript once', async () => {
    const conversationId = newConversationId();
    const body = transcriptionEvent(conversationId);
    const signature = sign(body, ACME_SECRET);
    const answers = await Promise.all(Array.from({ length: 5 }, () => post(body, signature).then(async (r) => ({ status: r.status, json: (await r.json()) as any }))));
    expect(answers.map((a) => a.status)).toEqual(Array(5).fill(200));
    expect(answers.filter((a) => a.json.outcome === 'stored')).toHaveLength(1);
    expect(answers.filter((a) => a.json.outcome === 'duplicate')).toHaveLength(4);
    expect(await (await post(body, signature)).json()).toEqual({ success: true, outcome: 'duplicate' });
    expect((await transcriptOf(conversationId)).json.entries).toEqual(EXPECTED_ENTRIES);
  });

  test.each([
    { name: 'no signature header', signature: () => null },
    { name: 'a signature made with an unknown secret', signature: (body: string) => sign(body, 'wsec_not-configured') },
    { name: 'the body changed after signing', signature: (body: string) => sign(`${body} `, ACME_SECRET) },
    { name: 'a stale timestamp', signature: (body: string) => sign(body, ACME_SECRET, nowSeconds - 30 * 60 - 1) },
  ])('$name: 401 SIGNATURE_INVALID, no transcript and no call', async ({ signature }) => {
    const conversationId = newConversationId();
    const body = transcriptionEvent(conversationId);
    const res = await post(body, signature(body));
    expect(res.status).toBe(401);
    expect(((await res.json()) as any).error.code).toBe('SIGNATURE_INVALID');
    expect(await t.gateway.db.calls.getByExternalId('acme', conversationId)).toBeNull();
    expect(await t.gateway.db.calls.getByExternalId('globex', conversationId)).toBeNull();
  });

  test.each([
    { name: 'no transcript', turns: undefined, issue: 'data.transcript' },
    { name: 'a turn of an unknown role', turns: [{ role: 'system', message: 'x', time_in_call_secs: 0 }], issue: 'data.transcript.0.role' },
    { name: 'a negative time in call', turns: [{ role: 'user', message: 'x', time_in_call_secs: -1 }], issue: 'data.transcript.0.time_in_call_secs' },
    { name: 'a message that is not text', turns: [{ role: 'user', message: 'ok', time_in_call_secs: 0 }, { role: 'agent', message: 42, time_in_call_secs: 1 }], issue: 'data.transcript.1.message' },
  ])('signed but $name: 400 BAD_REQUEST naming it, nothing stored', async ({ turns, issue }) => {
    const conversationId = newConversationId();
    const event = JSON.parse(transcriptionEvent(conversationId, {}, turns));
    if (turns === undefined) delete event.data.transcript;
    const body = JSON.stringify(event);
    const res = await post(body, sign(body, ACME_SECRET));
    expect(res.status).toBe(400);
    const error = ((await res.json()) as any).error;
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.details.issues.some((i: string) => i.startsWith(`${issue}:`))).toBe(true);
    expect(await t.gateway.db.calls.getByExternalId('acme', conversationId)).toBeNull();
  });

  test('agent policy enabled:false: 200 disabled, no transcript and no call', async () => {
    expect((await apiJson(t, 'PUT', '/api/agents/agent_quiet', { options: { recording: { enabled: false } } })).status).toBe(201);
    const conversationId = newConversationId();
    const body = transcriptionEvent(conversationId).replace('"agent_default"', '"agent_quiet"');
    const res = await post(body, sign(body, ACME_SECRET));
    expect(await res.json()).toEqual({ success: true, outcome: 'disabled' });
    expect(await t.gateway.db.calls.getByExternalId('acme', conversationId)).toBeNull();
  });
});

describe('refusals', () => {
  test.each([
    { name: 'no signature header', signature: () => null },
    { name: 'a signature made with an unknown secret', signature: (body: string) => sign(body, 'wsec_not-configured') },
    { name: 'a stale timestamp (30 minutes and 1 second)', signature: (body: string) => sign(body, ACME_SECRET, nowSeconds - 30 * 60 - 1) },
    { name: 'a timestamp an hour ahead', signature: (body: string) => sign(body, ACME_SECRET, nowSeconds + 3600) },
    { name: 'the timestamp changed after signing', signature: (body: string) => sign(body, ACME_SECRET).replace(`t=${nowSeconds}`, `t=${nowSeconds - 1}`) },
    { name: 'the body changed after signing', signature: (body: string) => sign(`${body} `, ACME_SECRET) },
    { name: 'a malformed header', signature: () => 'v0=abc' },
  ])('$name: 401 SIGNATURE_INVALID, nothing stored', async ({ signature }) => {
    const conversationId = newConversationId();
    const body = audioEvent({ conversationId, agentId: 'agent_default', audio: mpegFrames(MPEG1_L3_44K_MONO, 3) });
    const res = await post(body, signature(body));
    expect(res.status).toBe(401);
    expect(((await res.json()) as any).error.code).toBe('SIGNATURE_INVALID');
    expect(await storedFor('acme', conversationId)).toBeNull();
    expect(await storedFor('globex', conversationId)).toBeNull();
  });

  test.each([
    { name: 'not JSON', body: '{"type": ' },
    { name: 'no full_audio', body: JSON.stringify({ type: 'post_call_audio', data: { agent_id: 'a', conversation_id: newConversationId() } }) },
    { name: 'audio that is not base64', body: JSON.stringify({ type: 'post_call_audio', data: { agent_id: 'a', conversation_id: newConversationId(), full_audio: '@@@@' } }) },
  ])('signed but $name: 400 BAD_REQUEST', async ({ body }) => {
    const res = await post(body, sign(body, ACME_SECRET));
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe('BAD_REQUEST');
  });

  test.each(['call_initiation_failure', 'workspace_event'])('%s: 200 and ignored, so ElevenLabs keeps the webhook', async (type) => {
    const conversationId = newConversationId();
    const body = JSON.stringify({ type, event_timestamp: nowSeconds, data: { agent_id: 'agent_default', conversation_id: conversationId } });
    const res = await post(body, sign(body, ACME_SECRET));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true, outcome: 'ignored', type });
    expect(await storedFor('acme', conversationId)).toBeNull();
  });
});

describe('organisations, duplicates and agent policy', () => {
  test("the matching secret picks the organisation; another organisation's key gets 404 for it", async () => {
    const conversationId = newConversationId();
    const audio = mpegFrames(MPEG1_L3_44K_MONO, 5);
    const body = audioEvent({ conversationId, agentId: 'agent_default', audio });
    const { recordingSid } = (await (await post(body, sign(body, GLOBEX_SECRET))).json()) as any;
    expect(await storedFor('acme', conversationId)).toBeNull();
    expect(await storedFor('globex', conversationId)).toMatchObject({ recordingSid, status: 'completed' });
    const recording = await recordingJson(recordingSid, 'globex');
    expect((await media(`/api/call-recordings/${recordingSid}/media`, 'globex')).bytes.equals(audio)).toBe(true);

    const crossOrg = await media(`/api/call-recordings/${recordingSid}/media`, 'acme');
    expect(crossOrg.status).toBe(404);
    expect(JSON.parse(crossOrg.bytes.toString('utf8')).error.code).toBe('NOT_FOUND');
    expect((await media(`/calls/${recording.callSid}/recording`, 'acme')).status).toBe(404);
  });

  test('concurrent duplicate deliveries and a later retry store one recording', async () => {
    const conversationId = newConversationId();
    const audio = mpegFrames(MPEG1_L3_44K_MONO, 30);
    const body = audioEvent({ conversationId, agentId: 'agent_default', audio });
    const signature = sign(body, ACME_SECRET);
    const answers = await Promise.all(Array.from({ length: 6 }, () => post(body, signature).then(async (r) => ({ status: r.status, json: (await r.json()) as any }))));
    expect(answers.map((a) => a.status)).toEqual(Array(6).fill(200));
    expect(answers.filter((a) => a.json.outcome === 'stored')).toHaveLength(1);
    expect(answers.filter((a) => a.json.outcome === 'duplicate')).toHaveLength(5);
    expect(new Set(answers.map((a) => a.json.recordingSid)).size).toBe(1);

    const retry = (await (await post(body, signature)).json()) as any;
    expect(retry).toMatchObject({ outcome: 'duplicate', recordingSid: answers[0]!.json.recordingSid });
    const page = await t.gateway.db.recordings.list('acme', { callSid: conversationId, page: 0, limit: 100 });
    expect(page.total).toBe(1);
    expect((await media(`/api/call-recordings/${retry.recordingSid}/media`)).bytes.equals(audio)).toBe(true);
  });

  test('agent policy enabled:false: 200, nothing stored, no call created', async () => {
    expect((await apiJson(t, 'PUT', '/api/agents/agent_silent', { options: { recording: { enabled: false } } })).status).toBe(201);
    const conversationId = newConversationId();
    const body = audioEvent({ conversationId, agentId: 'agent_silent', audio: mpegFrames(MPEG1_L3_44K_MONO, 5) });
    const res = await post(body, sign(body, ACME_SECRET));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true, outcome: 'disabled' });
    expect(await storedFor('acme', conversationId)).toBeNull();
    expect(await t.gateway.db.calls.getByExternalId('acme', conversationId)).toBeNull();
  });

  test("agent policy with a client key: stored in client key mode, served as a redirect, and `callvault decrypt` writes the MP3", async () => {
    expect((await apiJson(t, 'PUT', '/api/agents/agent_private', { options: { recording: { enabled: true, key: CLIENT_KEY } } })).status).toBe(201);
    const audio = mpegFrames(MPEG2_L3_22K_STEREO, 50);
    const body = audioEvent({ conversationId: newConversationId(), agentId: 'agent_private', audio });
    const { recordingSid } = (await (await post(body, sign(body, ACME_SECRET))).json()) as any;
    const recording = await recordingJson(recordingSid);
    expect(recording).toMatchObject({ keyMode: 'client', format: 'mp3', sampleRate: 22050, channels: 2 });
    const redirect = await media(`/api/call-recordings/${recordingSid}/media`);
    expect(redirect.status).toBe(302);

    const row = (await t.gateway.db.recordings.get('acme', recording.id))!;
    const client = s3Client();
    const dir = await mkdtemp(join(tmpdir(), 'callvault-el-'));
    try {
      const object = await client.send(new GetObjectCommand({ Bucket: t.bucket, Key: row.objectKey }));
      await writeFile(join(dir, 'in.cvr'), await object.Body!.transformToByteArray());
      const result = await decryptRecordingToWav({ input: join(dir, 'in.cvr'), output: join(dir, 'out.mp3'), key: CLIENT_KEY });
      expect(result).toMatchObject({ sampleFormat: 'mp3', sampleRate: 22050, channels: 2, bytes: audio.length });
      expect((await readFile(join(dir, 'out.mp3'))).equals(audio)).toBe(true);
    } finally {
      client.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test('every status the routes answered in this file is documented in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
