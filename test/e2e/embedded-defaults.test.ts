/**
 * Every HTTP route on the embedded defaults `npm start` uses: the gateway is started from an environment that
 * names no database and no S3 endpoint (`startFromEnv`, as `src/main.ts` does), so it runs on embedded
 * PostgreSQL and s3rver under its DATA_DIR, with the generated development organisation. Only LiveKit is
 * configured (the test LiveKit server), so its routes exist; and the Twilio REST base points at a local
 * Twilio stand-in. Each route is called at least once with a request that does real work where it can
 * (audio recorded, served, imported, deleted on s3rver), and the test ends by checking, from the gateway's
 * own request metrics, that every route it registered was answered.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import twilio from 'twilio';
import WebSocket from 'ws';
import { RoomServiceClient } from 'livekit-server-sdk';
import { loadEnv } from '../../dist/config/index.js';
import { decryptObject, deriveClientDataKeyFor } from '../../dist/crypto/index.js';
import { startFromEnv, type RunningGateway } from '../../dist/bootstrap/from-env.js';
import { registeredRoutes } from '../../dist/api/index.js';
import { retentionSweeperOf } from '../../dist/bootstrap/wiring.js';
import { createLogger } from '../../dist/log/index.js';
import { signStreamUrl, simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { signEgressUrl } from '../../dist/ingest/livekit/index.js';
import { generateTone, pcm16ToBytes, toneAmplitude } from '../support/audio.js';
import { LogCapture, type TestAccount, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { uniqueName } from '../support/peers.js';
import { decodeWav } from '../api/support.js';
import { elevenLabsSignature, FakeTwilio, mpegFrames } from '../manage/support.js';
import { livekitPeer } from '../ingest-livekit/support.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { ensurePeer } from '../../scripts/peers.mjs';

const ELEVENLABS_SECRET = `whsec_${randomBytes(12).toString('hex')}`;
const MPEG1_L3_44K_MONO = { header: [0xff, 0xfb, 0x90, 0xc0], length: 417 };

let dataDir: string;
let running: RunningGateway;
let base: string;
let publicUrl: string;
let account: TestAccount;
let apiKey: string;
let fakeTwilio: FakeTwilio;
const logs = new LogCapture();

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'callvault-embedded-'));
  const lk = livekitPeer();
  // Twilio's REST API stand-in needs the account, which the gateway generates: start it on a known port first.
  fakeTwilio = await FakeTwilio.start([]);
  const env = loadEnv({
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    WORKER_THREADS: '1',
    LOG_LEVEL: 'info',
    TWILIO_API_BASE_URL: fakeTwilio.baseUrl,
    ELEVENLABS_WEBHOOK_SECRETS: `dev:${ELEVENLABS_SECRET}`,
    LIVEKIT_URL: lk.url,
    LIVEKIT_API_KEY: lk.apiKey,
    LIVEKIT_API_SECRET: lk.apiSecret,
  });
  expect(env.DATABASE_URL).toBeUndefined();
  expect(env.S3_ENDPOINT).toBeUndefined();
  running = await startFromEnv(env, createLogger({ level: 'info', destination: logs }));
  expect(running.embedded).toEqual({ postgres: true, s3: true });
  const creds = running.devCredentials!;
  account = { org: creds.org, accountSid: creds.accountSid, authToken: creds.authToken };
  fakeTwilio.accounts.push(account);
  apiKey = creds.apiKey;
  base = `http://127.0.0.1:${running.gateway.port}`;
  publicUrl = running.gateway.publicUrl;
}, 180_000);

afterAll(async () => {
  await running?.stop();
  await fakeTwilio?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}, 120_000);

function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, {
    method,
    redirect: 'manual',
    headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function okJson(res: Response, status: number): Promise<any> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return text ? JSON.parse(text) : null;
}

const streamUrl = () => `${publicUrl.replace(/^http/, 'ws')}/twilio/media`;

function placeCall(durationMs: number, recording?: Record<string, unknown>) {
  return simulateTwilioCall({
    url: `ws://127.0.0.1:${running.gateway.port}/twilio/media`,
    signedUrl: streamUrl(),
    accountSid: account.accountSid,
    authToken: account.authToken,
    durationMs,
    inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
    ...(recording ? { recording } : {}),
  });
}

async function recordingOf(callSid: string, status = 'completed'): Promise<any> {
  let found: any;
  await expect
    .poll(async () => {
      const page = await okJson(await call('GET', `/api/call-recordings?callSid=${callSid}&status=${status}`), 200);
      found = page.recordings[0];
      return found !== undefined;
    }, { timeout: 30_000 })
    .toBe(true);
  return found;
}

describe('every route on the embedded defaults (embedded PostgreSQL, s3rver)', () => {
  test('operations routes', async () => {
    expect(await okJson(await fetch(`${base}/healthz`), 200)).toEqual({ status: 'ok' });
    expect((await okJson(await fetch(`${base}/readyz`), 200)).checks).toMatchObject({ database: true, storage: true });
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
    expect((await okJson(await fetch(`${base}/openapi.json`), 200)).openapi).toMatch(/^3\.1/);
  });

  test('a Twilio call recorded on s3rver with the default options (mono), served, listed and deleted', async () => {
    const placed = await placeCall(2000);
    const rec = await recordingOf(placed.callSid);
    expect(rec).toMatchObject({ status: 'completed', channels: 1, format: 'wav', mediaType: 'audio', duration: 2, durationMs: 2000 });

    const served = await call('GET', `/calls/${placed.callSid}/recording`);
    expect(served.status).toBe(200);
    const wav = decodeWav(new Uint8Array(await served.arrayBuffer()));
    expect(wav.channels).toBe(1);
    // Mono, everyone mixed: both tones in the one channel.
    const mono = wav.channelSamples[0]!;
    expect(toneAmplitude(mono.subarray(1600, 30_000), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.6);
    expect(toneAmplitude(mono.subarray(1600, 30_000), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.6);
    expect((await call('HEAD', `/calls/${placed.callSid}/recording`)).status).toBe(200);

    const detail = await okJson(await call('GET', `/api/call-recordings/${rec.recordingSid}`), 200);
    expect(detail.recording.call).toMatchObject({ callSid: placed.callSid });
    const ranged = await call('GET', `/api/call-recordings/${rec.recordingSid}/media`, undefined, { range: 'bytes=0-99' });
    expect(ranged.status).toBe(206);
    expect((await ranged.arrayBuffer()).byteLength).toBe(100);
    expect((await okJson(await call('POST', `/api/call-recordings/${rec.recordingSid}/retry`), 409)).error.code).toBe('CONFLICT');

    expect((await call('DELETE', `/api/call-recordings/${rec.recordingSid}`)).status).toBe(204);
    expect((await call('GET', `/api/call-recordings/${rec.recordingSid}`)).status).toBe(404);

    const second = await placeCall(1000);
    await recordingOf(second.callSid);
    expect((await call('DELETE', `/calls/${second.callSid}/recording`)).status).toBe(204);
    expect((await call('GET', `/calls/${second.callSid}/recording`)).status).toBe(404);
  }, 90_000);

  test('a call’s artifacts: one track of a stereo call, a mono call’s 409, transcript, events and metadata', async () => {
    const mono = await placeCall(1000);
    await recordingOf(mono.callSid);
    expect((await okJson(await call('GET', `/calls/${mono.callSid}/recording?track=caller`), 409)).error.code).toBe('TRACKS_NOT_SEPARATE');

    const placed = await placeCall(1000, { enabled: true, stereo: true });
    await recordingOf(placed.callSid);
    const bot = decodeWav(new Uint8Array(await (await call('GET', `/calls/${placed.callSid}/recording?track=bot`)).arrayBuffer()));
    expect(bot).toMatchObject({ channels: 1, sampleRate: 16000, dataBytes: 32000 });
    expect(toneAmplitude(bot.channelSamples[0]!.subarray(1600, 14_000), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
    expect(toneAmplitude(bot.channelSamples[0]!.subarray(1600, 14_000), 16000, 440)).toBeLessThan(0.4 * 32767 * 0.01);

    const entry = { timestamp: '2026-12-01T14:30:22.123456Z', channel: 'caller', type: 'input', text: 'Hello', confidence: 0.9, duration_ms: 400 };
    expect(await okJson(await call('POST', `/calls/${placed.callSid}/transcript`, { entries: [entry] }), 201)).toEqual({ stored: 1 });
    expect((await okJson(await call('GET', `/calls/${placed.callSid}/transcript`), 200)).entries).toEqual([entry]);
    const fn = { type: 'function_call', timestamp: '2026-12-01T14:30:23.000001Z', function_name: 'lookup', arguments: { id: 1 }, result: { ok: true }, call_id: 'c1' };
    expect(await okJson(await call('POST', `/calls/${placed.callSid}/events`, { events: [fn] }), 201)).toEqual({ stored: 1 });
    const events = (await okJson(await call('GET', `/calls/${placed.callSid}/events`), 200)).events as any[];
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['transcript_entry', 'function_call', 'call_started', 'recording_started', 'recording_stopped']));
    const metadata = await okJson(await call('GET', `/calls/${placed.callSid}/metadata`), 200);
    expect(metadata).toMatchObject({ caller_audio_chunks: 50, bot_audio_chunks: 50, transcript_entries: 1, function_calls: [{ function_name: 'lookup', call_id: 'c1' }] });
    expect(metadata.speech.caller_speech_seconds).toBeGreaterThanOrEqual(0.9);
    const bundle = await call('GET', `/calls/${placed.callSid}/bundle`);
    expect(bundle.status).toBe(200);
    const zip = Buffer.from(await bundle.arrayBuffer());
    expect(zip.subarray(0, 4).equals(Buffer.from([0x50, 0x4b, 0x03, 0x04]))).toBe(true);
    expect(zip.includes(Buffer.from('/caller_audio.wav'))).toBe(true);

    // A signed playback URL: no Bearer header, Range and HEAD, the bot's tone; tampered is refused.
    const playback = await okJson(await call('POST', `/calls/${placed.callSid}/playback-url`, { track: 'bot' }), 201);
    expect(playback.url).toBe(`${publicUrl}${playback.path}`);
    const played = decodeWav(new Uint8Array(await (await fetch(`${base}${playback.path}`)).arrayBuffer()));
    expect(toneAmplitude(played.channelSamples[0]!.subarray(1600, 14_000), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
    const ranged = await fetch(`${base}${playback.path}`, { headers: { range: 'bytes=100-199' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 100-199/${44 + 32000}`);
    expect((await ranged.arrayBuffer()).byteLength).toBe(100);
    expect(Number((await fetch(`${base}${playback.path}`, { method: 'HEAD' })).headers.get('content-length'))).toBe(44 + 32000);
    const tampered = await fetch(`${base}${playback.path.replace('track=bot', 'track=caller')}`);
    expect((await okJson(tampered, 403)).error.code).toBe('PLAYBACK_URL_INVALID');
    // Client key mode on s3rver: the documents sealed at the call's end, a 302 to the presigned object, which
    // the client key decrypts to the JSON; a POST after the call is refused.
    const clientKey = randomBytes(32).toString('base64');
    const sealed = await placeCall(1000, { enabled: true, key: clientKey });
    await recordingOf(sealed.callSid);
    const redirect = await expect
      .poll(async () => (await call('GET', `/calls/${sealed.callSid}/metadata`)).status, { timeout: 20_000 })
      .toBe(302)
      .then(() => call('GET', `/calls/${sealed.callSid}/metadata`));
    const object = new Uint8Array(await (await fetch(redirect.headers.get('location')!)).arrayBuffer());
    const { header, plaintext } = await decryptObject(object, (h) => deriveClientDataKeyFor(clientKey, h));
    expect(header.contentType).toBe('application/json');
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toMatchObject({ call_id: sealed.callSid, recording: { key_mode: 'client' } });
    expect((await okJson(await call('POST', `/calls/${sealed.callSid}/transcript`, { entries: [entry] }), 409)).error.code).toBe('ARTIFACTS_SEALED');
  }, 60_000);

  test('the web console: its page with a Content-Security-Policy, its files', async () => {
    const page = await fetch(`${base}/console`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="console/app.js"></script>');
    expect((await fetch(`${base}/console/`, { redirect: 'manual' })).status).toBe(302);
    const app = await fetch(`${base}/console/app.js`);
    expect(app.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await app.text()).toContain('playback-url');
    expect((await fetch(`${base}/console/missing.js`)).status).toBe(404);
  });

  test('a stereo call transcribed by the default engine (PocketSphinx, from Debian via scripts/peers.mjs): queued, then completed', async () => {
    await ensurePeer('pocketsphinx');
    const placed = await placeCall(1000, { enabled: true, stereo: true });
    const rec = await recordingOf(placed.callSid);
    const queued = await okJson(await call('POST', `/api/call-recordings/${rec.recordingSid}/transcription`, {}), 202);
    expect(queued.transcription).toMatchObject({ status: 'queued', engine: 'pocketsphinx', diarization: true, channels: 'separate' });
    let done: any;
    await expect
      .poll(async () => {
        done = (await okJson(await call('GET', `/api/call-recordings/${rec.recordingSid}/transcription`), 200)).transcription;
        return done.status;
      }, { timeout: 60_000, interval: 200 })
      .toBe('completed');
    expect(done).toMatchObject({ error: null, transcript: { session_id: rec.recordingSid, entries: expect.any(Array) } });
    expect((await okJson(await call('GET', `/api/call-recordings/${rec.recordingSid}`), 200)).recording.metadata).toMatchObject({
      transcriptionRequested: true,
      transcriptionStatus: 'completed',
    });
  }, 90_000);

  test('mid-call control, and DELETE of a recording in progress (its open multipart upload aborted by id on s3rver)', async () => {
    const gatewayRef = { gateway: running.gateway } as unknown as TestGateway;
    const stream = await RawTwilioStream.open(gatewayRef, account, { signature: signStreamUrl(account.authToken, streamUrl()) });
    stream.start({ recording: JSON.stringify({ enabled: false }) });
    stream.media(0, 400, { inbound: 440, outbound: 1000 });
    await stream.flushed(gatewayRef, account.org, 400);
    const started = await okJson(await call('POST', '/api/call-recordings/start', { callSid: stream.callSid }), 201);
    expect(started.recording).toMatchObject({ status: 'in-progress', channels: 1 });
    const sid = started.recording.recordingSid as string;
    stream.media(400, 800, { inbound: 440, outbound: 1000 });
    await stream.flushed(gatewayRef, account.org, 800);
    expect(await okJson(await call('POST', `/api/call-recordings/${sid}/pause`, {}), 200)).toMatchObject({ paused: true });
    expect(await okJson(await call('POST', `/api/call-recordings/${sid}/resume`), 200)).toMatchObject({ paused: false });
    stream.media(800, 1200, { inbound: 440, outbound: 1000 });
    await stream.flushed(gatewayRef, account.org, 1200);
    expect((await okJson(await call('POST', '/api/call-recordings/stop', { recordingSid: sid }), 200)).stopped).toHaveLength(1);
    await recordingOf(stream.callSid);

    // A second recording of the same live call, deleted while it records.
    await okJson(await call('POST', '/api/call-recordings/start', { callSid: stream.callSid }), 201);
    stream.media(1200, 1600, { inbound: 440, outbound: 1000 });
    await stream.flushed(gatewayRef, account.org, 1600);
    await recordingOf(stream.callSid, 'in-progress');
    expect((await call('DELETE', `/calls/${stream.callSid}/recording`)).status).toBe(204);
    expect((await okJson(await call('GET', `/api/call-recordings?callSid=${stream.callSid}`), 200)).total).toBe(0);
    stream.stop();
    await stream.closed;
  }, 90_000);

  test('agent policy routes', async () => {
    const agent = `agent-${randomBytes(4).toString('hex')}`;
    await okJson(await call('PUT', `/api/agents/${agent}`, { options: { recording: { enabled: true, stereo: true } } }), 201);
    expect((await okJson(await call('GET', `/api/agents/${agent}`), 200)).agent).toMatchObject({ agentId: agent, options: { recording: { enabled: true, stereo: true } } });
    expect((await call('DELETE', `/api/agents/${agent}`)).status).toBe(204);
  });

  test('the fleet view: this one gateway, alive, with its version and the fleet jobs it holds', async () => {
    const fleet = await okJson(await call('GET', '/api/gateways'), 200);
    expect(fleet.gateways).toHaveLength(1);
    expect(fleet.gateways[0]).toMatchObject({ id: fleet.self, alive: true, version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    expect(fleet.gateways[0].heartbeatAgeMs).toBeLessThan(fleet.deadAfterMs);
    // Alone in its fleet, it holds the interrupted-marking job's lease.
    expect(fleet.gateways[0].leases).toContain('fleet-reaper');
  });

  test('Twilio-side recordings: the status callback imports onto s3rver; the poller runs', async () => {
    const callSid = `CA${randomBytes(16).toString('hex')}`;
    const rec = fakeTwilio.addCompleted(account, callSid, 1000);
    const url = `${publicUrl}/webhooks/twilio-recording`;
    const params = {
      AccountSid: account.accountSid,
      CallSid: callSid,
      RecordingSid: rec.sid,
      RecordingUrl: `https://api.twilio.com/2010-04-01/Accounts/${account.accountSid}/Recordings/${rec.sid}`,
      RecordingStatus: 'completed',
      RecordingDuration: '1',
      RecordingChannels: '2',
      RecordingSource: 'StartCallRecordingAPI',
    };
    const res = await fetch(`${base}/webhooks/twilio-recording`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(account.authToken, url, params) },
      body: new URLSearchParams(params).toString(),
    });
    expect(await okJson(res, 200)).toMatchObject({ outcome: 'stored' });
    const imported = await recordingOf(callSid);
    expect(imported).toMatchObject({ source: 'twilio', durationMs: 1000 });
    expect((await call('GET', `/api/call-recordings/${imported.recordingSid}/media`)).status).toBe(200);
    expect((await call('POST', '/api/call-recordings/poll')).status).toBe(200);
  }, 60_000);

  test('Twilio REST start-recording and call status, tags and consent, the SignalWire callback', async () => {
    const live = fakeTwilio.addCall(account);
    const started = await okJson(await call('POST', '/twilio/start-recording', { call_sid: live.sid }), 200);
    expect(started).toMatchObject({ success: true, call_sid: live.sid, status: 'in-progress', channels: 'dual' });
    const status = await okJson(await call('GET', `/twilio/call-status/${live.sid}`), 200);
    expect(status).toMatchObject({ call_sid: live.sid, status: 'in-progress', recordings: [expect.objectContaining({ recording_sid: started.recording_sid })] });

    const placed = await placeCall(1000);
    const rec = await recordingOf(placed.callSid);
    const consent = { given: true, at: '2026-03-01T09:00:00Z', by: 'agent:alice' };
    const patched = await okJson(await call('PATCH', `/api/call-recordings/${rec.recordingSid}`, { tags: ['qa'], consent }), 200);
    expect(patched.recording.metadata).toMatchObject({ tags: ['qa'], consent: { given: true, by: 'agent:alice' } });

    // No SignalWire project on the embedded defaults: refused, but answered.
    expect((await fetch(`${base}/webhooks/signalwire-recording`, { method: 'POST', body: 'AccountSid=x' })).status).toBe(403);
  }, 60_000);

  test('the ElevenLabs post-call webhook stores the MP3 on s3rver', async () => {
    const conversationId = `conv_${randomBytes(8).toString('hex')}`;
    const nowS = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({
      type: 'post_call_audio',
      event_timestamp: nowS,
      data: { agent_id: 'agent_x', conversation_id: conversationId, full_audio: mpegFrames(MPEG1_L3_44K_MONO, 20).toString('base64') },
    });
    const res = await fetch(`${base}/webhooks/elevenlabs-post-call`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'elevenlabs-signature': elevenLabsSignature(body, ELEVENLABS_SECRET, nowS) },
      body,
    });
    const answer = await okJson(res, 200);
    expect(answer).toMatchObject({ outcome: 'stored' });
    const rec = await recordingOf(conversationId);
    expect(rec).toMatchObject({ source: 'elevenlabs', format: 'mp3', mediaType: 'audio' });
    const media = await call('GET', `/api/call-recordings/${rec.recordingSid}/media`);
    expect(media.headers.get('content-type')).toBe('audio/mpeg');
    await media.arrayBuffer();
  }, 60_000);

  test('LiveKit routes: room recording start and stop, the webhook, and a Track Egress socket recorded on s3rver', async () => {
    const lk = livekitPeer();
    const rooms = new RoomServiceClient(lk.url.replace('ws://', 'http://'), lk.apiKey, lk.apiSecret);
    const room = uniqueName('embedded');
    const created = await rooms.createRoom({ name: room });
    const path = `/livekit/rooms/${encodeURIComponent(room)}/recording`;
    expect(await okJson(await call('POST', path, { enabled: true }), 201)).toMatchObject({ callId: created.sid });
    expect(await okJson(await call('DELETE', path), 200)).toMatchObject({ callId: created.sid });
    await rooms.deleteRoom(room);
    // Unsigned: refused, but answered.
    expect((await fetch(`${base}/livekit/webhook`, { method: 'POST', body: '{}' })).status).toBe(401);

    const masterKey = Buffer.from((await readFile(join(dataDir, 'master.key'), 'utf8')).trim(), 'base64');
    const roomSid = `RM_${randomBytes(6).toString('hex')}`;
    const url = signEgressUrl(
      base,
      { room: uniqueName('egress'), roomSid, participant: 'caller-1', track: 'TR_caller', role: 'caller', sampleRate: 48000 },
      { masterKey, expiresAtMs: Date.now() + 600_000 },
    );
    const ws = await new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.once('open', () => resolve(socket));
      socket.once('error', reject);
    });
    for (let offset = 0; offset < 48000; offset += 960) {
      ws.send(pcm16ToBytes(generateTone({ frequency: 440, sampleRate: 48000, samples: 960, amplitude: 8000, startSample: offset })), { binary: true });
    }
    ws.close(1000);
    const rec = await recordingOf(roomSid);
    expect(rec).toMatchObject({ source: 'livekit', channels: 1 });
    const wav = decodeWav(new Uint8Array(await (await call('GET', `/calls/${roomSid}/recording`)).arrayBuffer()));
    expect(toneAmplitude(wav.channelSamples[0]!.subarray(1600, 14_400), 16000, 440)).toBeGreaterThan(8000 * 0.6);
  }, 90_000);

  test('retention: the period set and read, and the sweeper deleting an expired recording on s3rver', async () => {
    expect(await okJson(await call('GET', '/api/retention'), 200)).toEqual({ success: true, retention: { days: null } });
    expect(await okJson(await call('PUT', '/api/retention', { days: 30 }), 200)).toEqual({ success: true, retention: { days: 30 } });
    const placed = await placeCall(600);
    const rec = await recordingOf(placed.callSid);
    const endedAt = Date.parse(rec.endTime);
    const sweeper = retentionSweeperOf(running.gateway);
    expect((await sweeper.sweepOnce(new Date(endedAt + 29 * 86_400_000))).deleted.map((d) => d.recordingSid)).not.toContain(rec.recordingSid);
    expect((await call('GET', `/calls/${placed.callSid}/recording`)).status).toBe(200);
    const swept = await sweeper.sweepOnce(new Date(endedAt + 31 * 86_400_000));
    expect(swept.failed).toBe(0);
    expect(swept.deleted.map((d) => d.recordingSid)).toContain(rec.recordingSid);
    expect((await call('GET', `/calls/${placed.callSid}/recording`)).status).toBe(404);
    expect(logs.find('recording deleted by retention').map((l) => l['recordingSid'])).toContain(rec.recordingSid);
    expect(await okJson(await call('PUT', '/api/retention', { days: null }), 200)).toEqual({ success: true, retention: { days: null } });
  }, 60_000);

  test('every registered route was answered at least once', async () => {
    const text = (await running.gateway.metrics.render()).body;
    const answered = new Set([...text.matchAll(/^callvault_http_request_duration_seconds_count\{method="\w+",route="([\w-]+)",status="\d+"\} \d+/gm)].map((m) => m[1]));
    const routes = registeredRoutes(running.gateway.app).map((r) => r.routeName);
    expect(routes.length).toBeGreaterThan(20);
    expect(routes.filter((name) => !answered.has(name))).toEqual([]);
    expect(await expectAnsweredStatusesDocumented(running.gateway)).toBeGreaterThan(routes.length);
  });
});
