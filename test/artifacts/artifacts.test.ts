/**
 * A call's transcript, session events and metadata against a real gateway (uWS, workers, PostgreSQL,
 * MinIO): entries and events posted by the bot (validated, scoped, with key scopes), read back as
 * transcript.json / session_events.json / call_metadata.json with the gateway's own events (stream, tracks,
 * DTMF, marks, pauses, close code), per-track counters, and speech time from the energy-based VAD.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateTone, toneAmplitude } from '../support/audio.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { RawTwilioStream } from '../support/twilio.js';
import { AGENT_HZ, CALLER_HZ, api, apiKeyOf, decodeWav, placeCall, storeRecording, until, window } from '../api/support.js';

const run = promisify(execFile);

let t: TestGateway;
let callSid: string;

const ISO_MICROS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

function post(path: string, body: unknown, opts: { org?: string; key?: string } = {}): Promise<Response> {
  return fetch(`${t.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.key ?? apiKeyOf(t, opts.org ?? 'acme')}` },
    body: JSON.stringify(body),
  });
}

async function getJson(path: string, org = 'acme'): Promise<{ status: number; body: any }> {
  const res = await api(t, path, { org });
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  t = await startTestGateway();
  // The caller talks (a 440 Hz tone) for the whole 2 s; the bot (1000 Hz) for the first second only.
  const bot = generateTone({ frequency: AGENT_HZ, amplitude: 0.4 * 32767, samples: 8000, sampleRate: 8000 });
  const placed = await placeCall(t, {
    durationMs: 2000,
    outbound: { kind: 'samples', samples: bot },
    customParameters: { conversationId: 'conv-12345' },
    dtmf: [{ atMs: 500, digit: '7' }],
    marks: [{ atMs: 1200, name: 'greeting-done' }],
  });
  expect(placed.closeCode).toBe(1000);
  callSid = placed.callSid;
});

afterAll(async () => {
  await t?.dispose();
});

const entries = [
  { timestamp: '2026-12-01T14:30:25.500001Z', channel: 'bot', type: 'output', text: 'How can I help?', confidence: null, duration_ms: 900 },
  { timestamp: '2026-12-01T14:30:22.123456Z', channel: 'caller', type: 'input', text: 'Hello', confidence: 0.92, duration_ms: 450 },
  { timestamp: '2026-12-01T15:30:23.000002+01:00', channel: 'caller', type: 'input', text: 'My card', confidence: 0.8 },
];

describe('transcript', () => {
  test('POST stores the entries; GET answers transcript.json in time order, UTC with microseconds', async () => {
    const res = await post(`/calls/${callSid}/transcript`, { entries });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ stored: 3 });
    const { status, body } = await getJson(`/calls/${callSid}/transcript`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ conversation_id: 'conv-12345', session_id: expect.stringMatching(/^CR[0-9a-f]{32}$/) });
    expect(body.start_time).toMatch(ISO_MICROS);
    expect(body.end_time).toMatch(ISO_MICROS);
    expect(body.entries).toEqual([
      { timestamp: '2026-12-01T14:30:22.123456Z', channel: 'caller', type: 'input', text: 'Hello', confidence: 0.92, duration_ms: 450 },
      { timestamp: '2026-12-01T14:30:23.000002Z', channel: 'caller', type: 'input', text: 'My card', confidence: 0.8, duration_ms: null },
      { timestamp: '2026-12-01T14:30:25.500001Z', channel: 'bot', type: 'output', text: 'How can I help?', confidence: null, duration_ms: 900 },
    ]);
  });

  test.each([
    ['a bad channel', { ...entries[0], channel: 'agent' }, 'entries.1.channel'],
    ['a timestamp without an offset', { ...entries[0], timestamp: '2026-12-01 14:30:22' }, 'entries.1.timestamp'],
    ['no text', { ...entries[0], text: undefined }, 'entries.1.text'],
    ['an unknown field', { ...entries[0], speaker: 'x' }, 'entries.1'],
    ['a confidence above 1', { ...entries[0], confidence: 7 }, 'entries.1.confidence'],
  ])('%s is a 400 naming the entry, and nothing of the request is stored', async (_what, bad, path) => {
    const before = (await getJson(`/calls/${callSid}/transcript`)).body.entries.length;
    const res = await post(`/calls/${callSid}/transcript`, { entries: [entries[1], bad] });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.details.issues.some((i: string) => i.startsWith(`${path}`))).toBe(true);
    expect((await getJson(`/calls/${callSid}/transcript`)).body.entries.length).toBe(before);
  });

  test('another organisation’s call is a 404 for POST and GET; a read-only key may GET but not POST (403)', async () => {
    expect((await post(`/calls/${callSid}/transcript`, { entries }, { org: 'globex' })).status).toBe(404);
    expect((await getJson(`/calls/${callSid}/transcript`, 'globex')).status).toBe(404);
    expect((await post(`/calls/CA${'0'.repeat(32)}/transcript`, { entries })).status).toBe(404);
    const readOnly = (await t.gateway.db.apiKeys.create('acme', { scopes: ['read'] })).key;
    const denied = await post(`/calls/${callSid}/transcript`, { entries }, { key: readOnly });
    expect(denied.status).toBe(403);
    expect((await denied.json()).error).toMatchObject({ code: 'FORBIDDEN', details: { requiredScope: 'control' } });
    const read = await fetch(`${t.httpUrl}/calls/${callSid}/transcript`, { headers: { authorization: `Bearer ${readOnly}` } });
    expect(read.status).toBe(200);
  });
});

const functionCall = {
  type: 'function_call',
  timestamp: '2026-12-01T14:30:24.000100Z',
  function_name: 'call_intent',
  arguments: { intent: 'card_replacement' },
  result: { status: 'success', available_cards: ['Gold', 'Silver'] },
  call_id: 'call_789',
};

describe('events', () => {
  test('POST stores events (function calls included); a bad one is a 400 naming it', async () => {
    const bad = await post(`/calls/${callSid}/events`, { events: [functionCall, { type: 'function_call', timestamp: functionCall.timestamp }] });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.details.issues.join('\n')).toContain('events.1');
    const res = await post(`/calls/${callSid}/events`, {
      events: [functionCall, { type: 'bot_interrupted', timestamp: '2026-12-01T14:30:26Z', media_ms: 1500, data: { by: 'caller', type: 'spoofed', source: 'gateway' } }],
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ stored: 2 });
    expect((await post(`/calls/${callSid}/events`, { events: [functionCall] }, { org: 'globex' })).status).toBe(404);
  });

  test('GET answers session_events.json: the gateway’s events and the posted ones, in time order', async () => {
    // The close code is stored as the stream closes, just after the simulator saw it.
    const body = await until(async () => {
      const { body } = await getJson(`/calls/${callSid}/events`);
      return body.events.some((e: any) => e.type === 'stream_stopped') ? body : undefined;
    }, 'the stream close event');
    expect(body).toMatchObject({ conversation_id: 'conv-12345' });
    const events = body.events as any[];
    for (const e of events) expect(e.timestamp).toMatch(ISO_MICROS);
    const stamps = events.map((e) => e.timestamp);
    expect([...stamps].sort()).toEqual(stamps);
    const types = events.map((e) => e.type);
    // Posted ones (dated 2026-12-01, before the call) first, then the call's own.
    expect(types.slice(0, 5)).toEqual(['transcript_entry', 'transcript_entry', 'function_call', 'transcript_entry', 'bot_interrupted']);
    expect(types.slice(5)).toEqual(expect.arrayContaining(['call_started', 'stream_started', 'recording_started', 'dtmf', 'mark', 'recording_stopped', 'stream_stopped', 'call_ended']));
    const byType = (type: string) => events.find((e) => e.type === type);
    expect(byType('function_call')).toMatchObject({ function_name: 'call_intent', arguments: { intent: 'card_replacement' }, call_id: 'call_789', source: 'posted' });
    // Its data never overrides the fields every event has.
    expect(byType('bot_interrupted')).toMatchObject({ type: 'bot_interrupted', media_ms: 1500, by: 'caller', source: 'posted' });
    expect(byType('stream_started')).toMatchObject({ tracks: ['inbound', 'outbound'], source: 'gateway' });
    expect(byType('dtmf')).toMatchObject({ digit: '7' });
    expect(byType('mark')).toMatchObject({ name: 'greeting-done' });
    expect(byType('recording_stopped')).toMatchObject({ status: 'completed', duration_ms: 2000 });
    expect(byType('stream_stopped')).toMatchObject({ close_code: 1000 });
    const order = (type: string) => types.indexOf(type);
    expect(order('call_started')).toBeLessThan(order('dtmf'));
    expect(order('recording_started')).toBeLessThan(order('recording_stopped'));
  });

  test('pauses and resumes of a live call are events with their media position', async () => {
    const stream = await RawTwilioStream.open(t, t.accounts[0]!);
    stream.start();
    stream.media(0, 1000, { inbound: 440, outbound: 1000 });
    await stream.flushed(t, 'acme', 1000);
    t.gateway.liveCall('acme', stream.callSid)!.pauseRecording('skip');
    stream.media(1000, 1500, { inbound: 440, outbound: 1000 });
    await stream.flushed(t, 'acme', 1500);
    t.gateway.liveCall('acme', stream.callSid)!.resumeRecording();
    stream.media(1500, 2000, { inbound: 440, outbound: 1000 });
    await stream.flushed(t, 'acme', 2000);
    stream.stop();
    expect((await stream.closed).code).toBe(1000);
    const events = await until(async () => {
      const { body } = await getJson(`/calls/${stream.callSid}/events`);
      return body.events?.some((e: any) => e.type === 'call_ended') ? (body.events as any[]) : undefined;
    }, 'the ended call');
    expect(events.find((e) => e.type === 'recording_paused')).toMatchObject({ media_ms: 1000, behavior: 'skip' });
    expect(events.find((e) => e.type === 'recording_resumed')).toMatchObject({ media_ms: 1500 });
  });
});

describe('metadata', () => {
  test('GET answers call_metadata.json: counters per track, function calls, format, and speech per channel (energy VAD)', async () => {
    const { status, body } = await getJson(`/calls/${callSid}/metadata`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      conversation_id: 'conv-12345',
      session_id: expect.stringMatching(/^CR/),
      // 2 s of 20 ms µ-law frames at 8 kHz per track: 100 chunks of 160 bytes.
      caller_audio_chunks: 100,
      bot_audio_chunks: 100,
      caller_audio_bytes: 16000,
      bot_audio_bytes: 16000,
      caller_audio_duration_seconds: 2,
      bot_audio_duration_seconds: 2,
      transcript_entries: 3,
      function_calls: [{ timestamp: '2026-12-01T14:30:24.000100Z', function_name: 'call_intent', arguments: { intent: 'card_replacement' }, result: functionCall.result, call_id: 'call_789' }],
      source: 'twilio',
      recording: { sample_rate: 16000, channels: 2, key_mode: 'server', format: 'wav', duration_seconds: 2, pauses: [], gaps: [] },
      speech: { detector: 'energy-rms-20ms', analysed_seconds: 2 },
    });
    expect(body.start_time).toMatch(ISO_MICROS);
    expect(body.duration_seconds).toBeGreaterThan(0);
    // The caller's tone runs 2 s, the bot's 1 s: the detector tells them apart per channel.
    expect(body.speech.caller_speech_seconds).toBeGreaterThanOrEqual(1.9);
    expect(body.speech.bot_speech_seconds).toBeGreaterThanOrEqual(0.9);
    expect(body.speech.bot_speech_seconds).toBeLessThanOrEqual(1.1);
  });

  test('another organisation’s call is a 404', async () => {
    expect((await getJson(`/calls/${callSid}/metadata`, 'globex')).status).toBe(404);
    expect((await getJson(`/calls/${callSid}/events`, 'globex')).status).toBe(404);
  });
});

describe('bundle', () => {
  test('GET /bundle is a zip of {session_id}_{timestamp}/ with the three WAVs and the three JSON files, as the routes serve them', async () => {
    const res = await api(t, `/calls/${callSid}/bundle`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/zip');
    const zip = new Uint8Array(await res.arrayBuffer());
    expect(Number(res.headers.get('content-length'))).toBe(zip.length);
    const dir = await mkdtemp(join(tmpdir(), 'callvault-bundle-'));
    try {
      const file = join(dir, 'bundle.zip');
      await writeFile(file, zip);
      // Checked and extracted by two independent readers: Info-ZIP's unzip (CRCs) and Python's zipfile.
      await run('unzip', ['-tq', file]);
      const { stdout } = await run('python3', ['-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print("\\n".join(z.namelist()))', file]);
      const names = stdout.trim().split('\n');
      const { body: transcript } = await getJson(`/calls/${callSid}/transcript`);
      const folder = names[0]!.split('/')[0]!;
      expect(folder).toMatch(new RegExp(`^${transcript.session_id}_\\d{8}_\\d{6}$`));
      expect(names).toEqual(['caller_audio.wav', 'bot_audio.wav', 'final_stereo_recording.wav', 'transcript.json', 'call_metadata.json', 'session_events.json'].map((n) => `${folder}/${n}`));
      await run('unzip', ['-q', file, '-d', dir]);
      const read = (name: string) => readFile(join(dir, folder, name));
      const stereo = decodeWav(new Uint8Array(await read('final_stereo_recording.wav')));
      const served = new Uint8Array(await (await api(t, `/calls/${callSid}/recording`)).arrayBuffer());
      expect(Buffer.from(await read('final_stereo_recording.wav')).equals(Buffer.from(served))).toBe(true);
      expect(stereo).toMatchObject({ channels: 2, sampleRate: 16000 });
      for (const [name, own, other] of [
        ['caller_audio.wav', CALLER_HZ, AGENT_HZ],
        ['bot_audio.wav', AGENT_HZ, CALLER_HZ],
      ] as const) {
        const wav = decodeWav(new Uint8Array(await read(name)));
        expect(wav).toMatchObject({ channels: 1, sampleRate: 16000, dataBytes: stereo.dataBytes / 2 });
        const w = window(wav.channelSamples[0]!, 16000, 200, 900);
        expect(toneAmplitude(w, 16000, own)).toBeGreaterThan(0.4 * 32767 * 0.9);
        expect(toneAmplitude(w, 16000, other)).toBeLessThan(0.4 * 32767 * 0.01);
      }
      expect(JSON.parse((await read('transcript.json')).toString())).toEqual(transcript);
      expect(JSON.parse((await read('call_metadata.json')).toString())).toEqual((await getJson(`/calls/${callSid}/metadata`)).body);
      expect(JSON.parse((await read('session_events.json')).toString())).toEqual((await getJson(`/calls/${callSid}/events`)).body);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a mono recording is 409 TRACKS_NOT_SEPARATE, a client-key one 409 CONFLICT, another organisation’s call 404', async () => {
    const mono = await storeRecording(t, { pcm: new Uint8Array(3200), sampleRate: 8000, channels: 1 });
    const refused = await api(t, `/calls/${mono.callSid}/bundle`);
    expect(refused.status).toBe(409);
    expect((await refused.json()).error.code).toBe('TRACKS_NOT_SEPARATE');
    const client = await placeCall(t, { durationMs: 400, recording: { enabled: true, stereo: true, key: randomBytes(32).toString('base64') } });
    const conflict = await api(t, `/calls/${client.callSid}/bundle`);
    expect(conflict.status).toBe(409);
    expect((await conflict.json()).error).toMatchObject({ code: 'CONFLICT', details: { keyMode: 'client' } });
    expect((await api(t, `/calls/${callSid}/bundle`, { org: 'globex' })).status).toBe(404);
  });
});

test('every status these routes answered is in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
