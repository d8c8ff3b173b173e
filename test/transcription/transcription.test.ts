/**
 * The transcription resource end to end: speech made by espeak-ng (Debian's, installed by scripts/peers.mjs)
 * is the caller track of a real Twilio Media Stream (8 kHz μ-law) into a real gateway, the bot track silent;
 * POST /api/call-recordings/{id}/transcription queues a job, the real PocketSphinx engine (Debian's
 * pocketsphinx, pocketsphinx-en-us) transcribes each channel in a child process, and GET answers the
 * transcript: spoken words on the caller channel, nothing on the bot's; the call's transcript has them too.
 * Also: client-key recordings (409), another organisation (404), mono recordings, and a queued job that a
 * restarted gateway picks up.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensurePeer } from '../../scripts/peers.mjs';
import { parseWav } from '../../dist/audio/wav.js';
import { isNarrowband, resampleWhole, type TranscriptionEngine } from '../../dist/transcription/index.js';
import { api, apiKeyOf, decodeWav, placeCall, storeRecording, until } from '../api/support.js';
import { pcm16ToBytes } from '../support/audio.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';

const run = promisify(execFile);

const SPOKEN = 'hello world this is a test of the recording';
/** The words of SPOKEN a recogniser has to get from sound alone (not the short function words it guesses often). */
const CONTENT_WORDS = ['hello', 'world', 'test', 'recording'];

let t: TestGateway;
let speech8k: Int16Array;
/** The caller channel of the stereo call as the gateway recorded it (16 kHz): the mono recordings below hold it. */
let callerTrack: Int16Array;
let callerText: string;
let workDir: string;

interface TranscriptionView {
  recordingSid: string;
  status: string;
  engine: string;
  language: string;
  diarization: boolean;
  channels: string;
  error: { code: string; message: string } | null;
  transcript: {
    conversation_id: string;
    session_id: string;
    start_time: string;
    end_time: string | null;
    entries: { timestamp: string; channel: 'caller' | 'bot'; type: string; text: string; confidence: number | null; duration_ms: number }[];
  } | null;
}

async function post(g: TestGateway, id: string, body: unknown = {}, org = 'acme') {
  return fetch(`${g.httpUrl}/api/call-recordings/${id}/transcription`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKeyOf(g, org)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function status(g: TestGateway, id: string, org = 'acme'): Promise<{ code: number; body: { transcription?: TranscriptionView; error?: { code: string } } }> {
  const res = await api(g, `/api/call-recordings/${id}/transcription`, { org });
  return { code: res.status, body: await res.json() };
}

async function completed(g: TestGateway, id: string): Promise<TranscriptionView> {
  const view = await until(async () => {
    const v = (await status(g, id)).body.transcription;
    return v && (v.status === 'completed' || v.status === 'failed') ? v : undefined;
  }, 'the transcription to finish', 60_000);
  expect(view.error).toBeNull();
  return view;
}

/** A call whose caller says SPOKEN (espeak-ng, 8 kHz μ-law on the wire) and whose bot is silent. */
async function speakingCall(g: TestGateway, recording?: unknown) {
  const durationMs = Math.ceil((speech8k.length / 8000) * 50) * 20 + 600;
  const placed = await placeCall(g, { durationMs, inbound: { kind: 'samples', samples: speech8k }, outbound: { kind: 'silence' }, ...(recording ? { recording } : {}) });
  expect(placed.closeCode).toBe(1000);
  const row = await until(async () => (await g.gateway.db.recordings.list('acme', { callSid: placed.callSid, status: 'completed', page: 0, limit: 1 })).rows[0], 'the completed recording');
  return { callSid: placed.callSid, row };
}

beforeAll(async () => {
  await ensurePeer('espeak-ng');
  await ensurePeer('pocketsphinx');
  workDir = await mkdtemp(join(tmpdir(), 'callvault-speech-'));
  const wavPath = join(workDir, 'speech.wav');
  await run('/usr/bin/espeak-ng', ['-v', 'en-us', '-s', '120', '-w', wavPath, SPOKEN]);
  const wav = parseWav(new Uint8Array(await readFile(wavPath)));
  expect(wav.channels).toBe(1);
  const pcm = new Int16Array(Uint8Array.from(wav.data).buffer);
  // The project's own resampler brings espeak-ng's 22 050 Hz to the 8 kHz of a phone line; the simulator μ-law encodes it.
  speech8k = resampleWhole(pcm, wav.sampleRate, 8000);
  t = await startTestGateway({ transcription: { pollIntervalMs: 200 } });
}, 180_000);

afterAll(async () => {
  if (t) {
    await expectAnsweredStatusesDocumented(t.gateway);
    await t.dispose();
  }
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('a stereo Twilio call: the caller speaks, the bot is silent', () => {
  let callSid: string;
  let recordingSid: string;
  let view: TranscriptionView;

  beforeAll(async () => {
    const call = await speakingCall(t);
    callSid = call.callSid;
    recordingSid = call.row.recordingSid;
    expect(call.row.channels).toBe(2);
    const before = await status(t, recordingSid);
    expect(before.code).toBe(404);
    expect(before.body.error?.code).toBe('NOT_FOUND');
    const res = await post(t, recordingSid);
    expect(res.status).toBe(202);
    const queued = (await res.json()).transcription as TranscriptionView;
    expect(queued).toMatchObject({ recordingSid, status: 'queued', engine: 'pocketsphinx', language: 'en-US', diarization: true, channels: 'separate', transcript: null });
    view = await completed(t, recordingSid);
    const track = await api(t, `/calls/${callSid}/recording?track=caller`);
    expect(track.status).toBe(200);
    callerTrack = decodeWav(new Uint8Array(await track.arrayBuffer())).channelSamples[0]!;
    callerText = view.transcript!.entries.filter((e) => e.channel === 'caller').map((e) => e.text).join(' ');
  }, 120_000);

  test('the caller channel holds some of the spoken words; the bot channel holds none', () => {
    expect(view).toMatchObject({ status: 'completed', channels: 'separate' });
    const caller = view.transcript!.entries.filter((e) => e.channel === 'caller');
    const bot = view.transcript!.entries.filter((e) => e.channel === 'bot');
    const heard = new Set(caller.flatMap((e) => e.text.split(' ')));
    const found = CONTENT_WORDS.filter((w) => heard.has(w));
    // What PocketSphinx gets of this speech over μ-law (see README): at least two of the four content words.
    expect(found.length, `heard: ${[...heard].join(' ')}`).toBeGreaterThanOrEqual(2);
    expect(bot).toEqual([]);
    for (const e of caller) {
      expect(e).toMatchObject({ type: 'input' });
      expect(e.confidence).toBeGreaterThanOrEqual(0);
      expect(e.confidence).toBeLessThanOrEqual(1);
      expect(e.duration_ms).toBeGreaterThan(0);
      expect(e.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    }
    expect(view.transcript).toMatchObject({ session_id: recordingSid, conversation_id: callSid });
  });

  test('the caller track (a phone line, 8 kHz μ-law) is found narrowband and gets the noise floor; the same speech at full band is not', async () => {
    expect(isNarrowband(callerTrack)).toBe(true);
    const wide = parseWav(new Uint8Array(await readFile(join(workDir, 'speech.wav'))));
    expect(isNarrowband(resampleWhole(new Int16Array(Uint8Array.from(wide.data).buffer), wide.sampleRate, 16000))).toBe(false);
    // Digital silence (the bot's channel) is not: nothing to fill, nothing to hear.
    expect(isNarrowband(new Int16Array(16000))).toBe(false);
  });

  test('the recording’s metadata shows the request and its status', async () => {
    const res = await api(t, `/api/call-recordings/${recordingSid}`);
    expect(res.status).toBe(200);
    expect((await res.json()).recording.metadata).toMatchObject({ transcriptionRequested: true, transcriptionStatus: 'completed' });
  });

  test('the entries are the call’s transcript too (GET /calls/{callId}/transcript)', async () => {
    const res = await api(t, `/calls/${callSid}/transcript`);
    expect(res.status).toBe(200);
    const transcript = await res.json();
    expect(transcript.entries).toEqual(view.transcript!.entries);
  });

  test('a completed transcription is final: asking again is a 409', async () => {
    const res = await post(t, recordingSid);
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatchObject({ code: 'TRANSCRIPTION_IN_PROGRESS', details: { status: 'completed' } });
  });

  test('another organisation’s recording is a 404, to POST and to GET', async () => {
    const res = await post(t, recordingSid, {}, 'globex');
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe('NOT_FOUND');
    const got = await status(t, recordingSid, 'globex');
    expect(got.code).toBe(404);
    expect(got.body.error?.code).toBe('NOT_FOUND');
  });

  test.each([
    [{ engine: 'whisper' }, 'engine'],
    [{ language: 'fr-FR' }, 'language'],
    [{ diarization: 'yes' }, 'diarization'],
    [{ speakers: 2 }, '(body)'],
  ])('a bad body %j is a 400 naming %s', async (body, field) => {
    const res = await post(t, recordingSid, body);
    expect(res.status).toBe(400);
    const error = (await res.json()).error;
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.details.issues.join('\n')).toContain(field);
  });
});

describe('recordings that are not transcribed as asked', () => {
  test('a client-key recording is a 409 TRANSCRIPTION_NEEDS_SERVER_KEY: the server cannot decrypt it', async () => {
    const placed = await placeCall(t, { durationMs: 400, recording: { enabled: true, stereo: true, key: randomBytes(32).toString('base64') } });
    expect(placed.closeCode).toBe(1000);
    await expect.poll(async () => (await t.gateway.db.recordings.list('acme', { callSid: placed.callSid, status: 'completed', page: 0, limit: 1 })).rows.length, { timeout: 20_000 }).toBe(1);
    const row = (await t.gateway.db.recordings.list('acme', { callSid: placed.callSid, page: 0, limit: 1 })).rows[0]!;
    expect(row.keyMode).toBe('client');
    const res = await post(t, row.recordingSid);
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatchObject({ code: 'TRANSCRIPTION_NEEDS_SERVER_KEY', details: { keyMode: 'client' } });
    expect((await status(t, row.recordingSid)).code).toBe(404);
  });

  test('a mono recording: diarization true is a 409 TRACKS_NOT_SEPARATE; by default it is transcribed as one mixed channel', async () => {
    // The caller's channel of the call above, alone in a mono recording: the same sound, so the same words.
    const stored = await storeRecording(t, { pcm: pcm16ToBytes(callerTrack), sampleRate: 16000, channels: 1 });
    const refused = await post(t, stored.recordingId, { diarization: true });
    expect(refused.status).toBe(409);
    expect((await refused.json()).error).toMatchObject({ code: 'TRACKS_NOT_SEPARATE', details: { channels: 1 } });
    const res = await post(t, stored.recordingId);
    expect(res.status).toBe(202);
    expect((await res.json()).transcription).toMatchObject({ status: 'queued', diarization: false, channels: 'mixed' });
    const view = await completed(t, stored.recordingId);
    expect(view.channels).toBe('mixed');
    expect(view.transcript!.entries.map((e) => e.text).join(' ')).toBe(callerText);
    expect(view.transcript!.entries.every((e) => e.channel === 'caller')).toBe(true);
    // Mixed entries cannot be attributed to caller or bot: they stay on the job, not in the call's transcript.
    const call = await api(t, `/calls/${stored.callSid}/transcript`);
    expect((await call.json()).entries).toEqual([]);
  }, 60_000);
});

describe('status transitions, with engines the test controls', () => {
  test('queued → in-progress (while the engine works) → completed; the recording’s metadata follows', async () => {
    let release: () => void = () => undefined;
    const working = new Promise<void>((resolve) => (release = resolve));
    const calls: { samples: number; sampleRate: number; language: string }[] = [];
    const held: TranscriptionEngine = {
      name: 'held',
      languages: ['en-GB'],
      async transcribe(pcm16, sampleRate, language) {
        calls.push({ samples: pcm16.length, sampleRate, language });
        await working;
        return [{ startMs: 100, endMs: 900, text: `channel ${calls.length}`, confidence: 0.5 }];
      },
    };
    const g = await startTestGateway({ transcription: { engines: [held], pollIntervalMs: 100 } });
    try {
      const stereo = new Int16Array(2 * 16000);
      const stored = await storeRecording(g, { pcm: pcm16ToBytes(stereo), sampleRate: 16000, channels: 2 });
      const res = await post(g, stored.recordingId);
      expect(res.status).toBe(202);
      expect(res.headers.get('location')).toMatch(/^\/api\/call-recordings\/CR[0-9a-f]{32}\/transcription$/);
      expect((await res.json()).transcription).toMatchObject({ status: 'queued', engine: 'held', language: 'en-GB' });
      await until(async () => ((await status(g, stored.recordingId)).body.transcription?.status === 'in-progress' ? true : undefined), 'in-progress');
      const metadata = async () => (await g.gateway.db.recordings.get('acme', stored.recordingId))!.metadata;
      expect(await metadata()).toMatchObject({ transcriptionRequested: true, transcriptionStatus: 'in-progress' });
      const busy = await post(g, stored.recordingId);
      expect(busy.status).toBe(409);
      expect((await busy.json()).error).toMatchObject({ code: 'TRANSCRIPTION_IN_PROGRESS', details: { status: 'in-progress' } });
      release();
      const view = await completed(g, stored.recordingId);
      // One call per channel, each a mono channel of the recording at its own rate.
      expect(calls).toEqual([
        { samples: 16000, sampleRate: 16000, language: 'en-GB' },
        { samples: 16000, sampleRate: 16000, language: 'en-GB' },
      ]);
      expect(view.transcript!.entries.map((e) => [e.channel, e.type, e.text, e.duration_ms])).toEqual([
        ['caller', 'input', 'channel 1', 800],
        ['bot', 'output', 'channel 2', 800],
      ]);
      expect(await metadata()).toMatchObject({ transcriptionStatus: 'completed' });
    } finally {
      release();
      await g.dispose();
    }
  });

  test('an engine that fails: failed with a stable code and a fixed message, then a new request is accepted', async () => {
    let fail = true;
    const flaky: TranscriptionEngine = {
      name: 'flaky',
      languages: ['en-US'],
      async transcribe() {
        if (fail) throw new Error('model exploded: /secret/path');
        return [];
      },
    };
    const g = await startTestGateway({ transcription: { engines: [flaky], pollIntervalMs: 100 } });
    try {
      const stored = await storeRecording(g, { pcm: pcm16ToBytes(new Int16Array(3200)), sampleRate: 16000, channels: 1 });
      expect((await post(g, stored.recordingId)).status).toBe(202);
      const failed = await until(async () => {
        const v = (await status(g, stored.recordingId)).body.transcription;
        return v?.status === 'failed' ? v : undefined;
      }, 'the failure');
      expect(failed.error).toEqual({ code: 'TRANSCRIPTION_ENGINE_FAILED', message: 'the transcription engine failed' });
      expect(JSON.stringify(failed)).not.toContain('secret');
      expect((await g.gateway.db.recordings.get('acme', stored.recordingId))!.metadata).toMatchObject({ transcriptionStatus: 'failed' });
      fail = false;
      expect((await post(g, stored.recordingId)).status).toBe(202);
      expect((await completed(g, stored.recordingId)).transcript!.entries).toEqual([]);
    } finally {
      await g.dispose();
    }
  });
});

describe('jobs survive a restart', () => {
  test('a job queued on a gateway that runs none (TRANSCRIPTION_CONCURRENCY=0) is run by the next gateway started on the database', async () => {
    const keyring = t.gateway.options.keyring;
    const first = await startTestGateway({ transcription: { concurrency: 0 }, keyring });
    let second: TestGateway | undefined;
    try {
      const stored = await storeRecording(first, { pcm: pcm16ToBytes(callerTrack), sampleRate: 16000, channels: 1 });
      const res = await post(first, stored.recordingId);
      expect(res.status).toBe(202);
      // Nobody runs it here: it stays queued.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await status(first, stored.recordingId)).body.transcription?.status).toBe('queued');
      await first.gateway.close();
      second = await startTestGateway({
        databaseUrl: first.databaseUrl,
        keyring,
        apiKeys: first.gateway.options.apiKeys,
        s3: { bucket: first.bucket },
        transcription: { pollIntervalMs: 200 },
      });
      const view = await completed(second, stored.recordingId);
      expect(view.status).toBe('completed');
      expect(view.transcript!.entries.map((e) => e.text).join(' ')).toBe(callerText);
    } finally {
      await second?.dispose();
      await first.dispose();
    }
  }, 120_000);

  test('an in-progress job whose lease ran out unrenewed (its gateway died) is claimed again; a live lease is not', async () => {
    const idle = await startTestGateway({ transcription: { concurrency: 0 } });
    try {
      const db = idle.gateway.db;
      const stored = await storeRecording(idle, { pcm: pcm16ToBytes(new Int16Array(1600)), sampleRate: 16000, channels: 1 });
      expect(await db.transcriptions.request('acme', stored.recordingId, { engine: 'pocketsphinx', language: 'en-US', diarization: false })).toMatchObject({ status: 'queued' });
      const claimed = await db.transcriptions.claim(400);
      expect(claimed).toMatchObject({ recordingId: stored.recordingId, status: 'in_progress', attempts: 1 });
      // Its lease is live: nobody else takes it.
      expect(await db.transcriptions.claim(400)).toBeNull();
      expect(await db.transcriptions.request('acme', stored.recordingId, { engine: 'pocketsphinx', language: 'en-US', diarization: false })).toBeNull();
      // Its runner is gone (no renewal): once the lease runs out it is claimed again.
      await expect.poll(() => db.transcriptions.claim(60_000), { timeout: 5_000, interval: 100 }).toMatchObject({ recordingId: stored.recordingId, attempts: 2 });
      // Whichever runner finishes first completes it, once: the other's answer is dropped (no entries added twice).
      expect(await db.transcriptions.complete(claimed!.id, { segments: [] })).toBe(true);
      expect(await db.transcriptions.complete(claimed!.id, { segments: [] })).toBe(false);
    } finally {
      await idle.dispose();
    }
  });
});
