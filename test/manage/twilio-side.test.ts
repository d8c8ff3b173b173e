/**
 * Recordings Twilio makes: the status callback (signature, import, duplicates), starting/pausing them through
 * Twilio's API, and the poller. The real `twilio` client talks to a local server answering like Twilio's
 * Recordings API, configured as the gateway's TWILIO_API_BASE_URL.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { decodeWav } from '../api/support.js';
import { apiJson, completedParams, FakeTwilio, postRecordingCallback, TWILIO_LEFT_HZ, TWILIO_RIGHT_HZ } from './support.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';

const accounts = [testAccount('acme'), testAccount('globex')];
const acme = accounts[0]!;
let fake: FakeTwilio;
let t: TestGateway;
let pollTask: (() => void) | undefined;

beforeAll(async () => {
  fake = await FakeTwilio.start(accounts);
  t = await startTestGateway({
    accounts,
    twilio: {
      accounts,
      validateSignatures: true,
      maxAheadOfClockMs: 10_000,
      apiBaseUrl: fake.baseUrl,
      deleteAfterImport: true,
      recordingPolling: {
        enabled: true,
        intervalMs: 60_000,
        scheduler: (task) => {
          pollTask = task;
          return () => {
            pollTask = undefined;
          };
        },
      },
    },
  });
});
afterAll(async () => {
  await t?.dispose();
  await fake?.close();
});

const newCallSid = () => `CA${randomBytes(16).toString('hex')}`;

async function twilioRows(callSid: string, org = 'acme') {
  return (await recordingsOfCall(t, org, callSid)).filter((r) => r.source === 'twilio');
}

describe('status callback', () => {
  test.each([
    ['no signature', { signature: null }],
    ['a signature made with another token', { signWith: randomBytes(16).toString('hex') }],
    ['a garbage signature', { signature: 'bm90IGEgc2lnbmF0dXJl' }],
  ] as const)('%s: 403 SIGNATURE_INVALID, nothing downloaded or stored', async (_name, opts) => {
    const rec = fake.addCompleted(acme, newCallSid());
    const res = await postRecordingCallback(t, acme, completedParams(acme, rec), opts);
    expect(res.status).toBe(403);
    expect(((await res.json()) as any).error.code).toBe('SIGNATURE_INVALID');
    expect(fake.requests.filter((r) => r.path.includes(rec.sid))).toEqual([]);
    expect(await twilioRows(rec.callSid)).toEqual([]);
  });

  test('a parameter changed after signing is refused', async () => {
    const rec = fake.addCompleted(acme, newCallSid());
    const other = fake.addCompleted(acme, newCallSid());
    const params = completedParams(acme, rec);
    const signature = (await import('twilio')).default.getExpectedTwilioSignature(acme.authToken, 'https://rec.example.test/webhooks/twilio-recording', params);
    const res = await postRecordingCallback(t, acme, { ...params, RecordingSid: other.sid }, { signature });
    expect(res.status).toBe(403);
  });

  test('an unknown AccountSid is refused', async () => {
    const stranger = testAccount('acme');
    const res = await postRecordingCallback(t, stranger, completedParams(stranger, { sid: `RE${'1'.repeat(32)}`, callSid: newCallSid() }));
    expect(res.status).toBe(403);
  });

  test('completed: downloaded, encrypted, stored at 8 kHz stereo, linked to the call, deleted from Twilio', async () => {
    const rec = fake.addCompleted(acme, newCallSid(), 1500);
    const res = await postRecordingCallback(t, acme, completedParams(acme, rec));
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ outcome: 'stored', recordingSid: expect.stringMatching(/^CR[0-9a-f]{32}$/) });
    const [row] = await twilioRows(rec.callSid);
    expect(row).toMatchObject({ status: 'completed', channels: 2, sampleRate: 8000, durationMs: 1500, keyMode: 'server' });
    expect(row!.metadata).toMatchObject({ twilioRecordingSid: rec.sid, deletedFromTwilioAt: expect.any(String) });
    expect(rec.deleted).toBe(true);
    const decoded = await fetchRecording(t, row!);
    const [left, right] = decoded.channelSamples as [Int16Array, Int16Array];
    expect(toneAmplitude(left, 8000, TWILIO_LEFT_HZ)).toBeGreaterThan(11900);
    expect(toneAmplitude(left, 8000, TWILIO_RIGHT_HZ)).toBeLessThan(5);
    expect(toneAmplitude(right, 8000, TWILIO_RIGHT_HZ)).toBeGreaterThan(11900);
    // Through the API: the call it belongs to, and the WAV at the recording's own rate.
    const got = (await (await apiJson(t, 'GET', `/api/call-recordings/${body.recordingSid}`)).json()) as any;
    expect(got.recording).toMatchObject({ source: 'twilio', callSid: rec.callSid, call: { callSid: rec.callSid, status: 'ended' } });
    const wav = decodeWav(new Uint8Array(await (await apiJson(t, 'GET', `/api/call-recordings/${body.recordingSid}/media`)).arrayBuffer()));
    expect({ rate: wav.sampleRate, channels: wav.channels, samples: wav.channelSamples[0]!.length }).toEqual({ rate: 8000, channels: 2, samples: 12000 });
  });

  test('concurrent duplicate callbacks and a later retry store it exactly once', async () => {
    const rec = fake.addCompleted(acme, newCallSid());
    const params = completedParams(acme, rec);
    const answers = await Promise.all(Array.from({ length: 6 }, () => postRecordingCallback(t, acme, params)));
    const outcomes = await Promise.all(answers.map(async (r) => ({ status: r.status, outcome: ((await r.json()) as any).outcome })));
    expect(outcomes.filter((o) => o.status === 200 && o.outcome === 'stored')).toHaveLength(1);
    expect(outcomes.every((o) => o.status === 200 && (o.outcome === 'stored' || o.outcome === 'duplicate'))).toBe(true);
    const retry = (await (await postRecordingCallback(t, acme, params)).json()) as any;
    expect(retry.outcome).toBe('duplicate');
    expect(await twilioRows(rec.callSid)).toHaveLength(1);
    expect(fake.requests.filter((r) => r.path.endsWith(`${rec.sid}.wav`)).length).toBeLessThanOrEqual(6);
  });

  test('in-progress and absent statuses store nothing', async () => {
    const rec = fake.addCompleted(acme, newCallSid());
    for (const status of ['in-progress', 'absent']) {
      const res = await postRecordingCallback(t, acme, { ...completedParams(acme, rec), RecordingStatus: status });
      expect(((await res.json()) as any).outcome).toBe('ignored');
    }
    expect(await twilioRows(rec.callSid)).toEqual([]);
  });
});

describe('Twilio-side recordings started through the API', () => {
  test('start (dual channel, callback here), pause with skip, resume, start twice 409, stop, then the callback imports it with the requested key', async () => {
    const s = await RawTwilioStream.open(t, acme);
    s.start({ recording: JSON.stringify({ enabled: false }) });
    await s.flushed(t, 'acme', 0);
    fake.addCall(acme, s.callSid);
    const key = randomBytes(32).toString('hex');
    const started = await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: s.callSid, source: 'twilio', key, recordingTrack: 'both' });
    expect(started.status).toBe(201);
    const { recording } = (await started.json()) as any;
    expect(recording).toMatchObject({ source: 'twilio', status: 'in-progress', recordingSid: expect.stringMatching(/^RE/) });
    const create = fake.requests.find((r) => r.method === 'POST' && r.path.endsWith(`/Calls/${s.callSid}/Recordings.json`))!;
    expect(create.form).toMatchObject({ RecordingChannels: 'dual', RecordingStatusCallback: 'https://rec.example.test/webhooks/twilio-recording' });
    expect(JSON.stringify(create.form)).not.toContain(key);

    expect((await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: s.callSid, source: 'twilio' })).status).toBe(409);
    const paused = await apiJson(t, 'POST', `/api/call-recordings/${recording.recordingSid}/pause`, { behavior: 'skip' });
    expect(paused.status).toBe(200);
    expect(fake.recordings.get(recording.recordingSid)).toMatchObject({ status: 'paused', pauseBehavior: 'skip' });
    expect((await apiJson(t, 'POST', `/api/call-recordings/${recording.recordingSid}/pause`, { behavior: 'skip' })).status).toBe(409);
    expect((await apiJson(t, 'POST', `/api/call-recordings/${recording.recordingSid}/resume`)).status).toBe(200);
    expect(fake.recordings.get(recording.recordingSid)!.status).toBe('in-progress');
    expect((await apiJson(t, 'POST', `/api/call-recordings/${recording.recordingSid}/pause`, {}, 'globex')).status).toBe(404);
    const stopped = await apiJson(t, 'POST', '/api/call-recordings/stop', { recordingSid: recording.recordingSid });
    expect(stopped.status).toBe(200);
    expect(fake.recordings.get(recording.recordingSid)!.status).toBe('completed');

    const res = await postRecordingCallback(t, acme, completedParams(acme, { sid: recording.recordingSid, callSid: s.callSid }));
    expect(((await res.json()) as any).outcome).toBe('stored');
    const [row] = await twilioRows(s.callSid);
    expect(row!.keyMode).toBe('client');
    const decoded = await fetchRecording(t, row!, key);
    expect(toneAmplitude(decoded.channelSamples[0]!, 8000, TWILIO_LEFT_HZ)).toBeGreaterThan(11900);
    s.stop();
    await s.closed;
  });

  test('starting on a call that is not active is 404', async () => {
    const res = await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: newCallSid(), source: 'twilio' });
    expect(res.status).toBe(404);
  });
});

describe('poller', () => {
  async function knownCall(callSid: string) {
    await t.gateway.db.calls.upsertActive({ orgId: 'acme', source: 'twilio', externalId: callSid, startedAt: new Date(), metadata: { accountSid: acme.accountSid } });
  }

  test('POST /api/call-recordings/poll answers { processed, details: [{ callSid, status }] }: uploaded, no_recordings and twilio_error; a second run skips the uploaded call', async () => {
    const withRecording = newCallSid();
    const without = newCallSid();
    const failing = newCallSid();
    for (const sid of [withRecording, without, failing]) await knownCall(sid);
    fake.addCompleted(acme, withRecording, 500);
    fake.failingCalls.add(failing);
    const res = await apiJson(t, 'POST', '/api/call-recordings/poll');
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { processed: number; details: { callSid: string; status: string; recordings: string[]; error?: unknown }[] };
    const outcome = (sid: string) => answer.details.find((c) => c.callSid === sid);
    expect(outcome(withRecording)).toMatchObject({ status: 'uploaded', recordings: [expect.stringMatching(/^CR/)] });
    expect(outcome(without)).toMatchObject({ status: 'no_recordings', recordings: [] });
    // A mapped code and a fixed sentence, Twilio's HTTP status when it answered.
    expect(outcome(failing)).toMatchObject({ status: 'twilio_error', error: { code: 'STORAGE_UNAVAILABLE', twilioStatus: 500, message: expect.any(String) } });
    expect(answer.processed).toBe(answer.details.filter((d) => d.status === 'uploaded').length);
    expect(answer.processed).toBeGreaterThanOrEqual(1);
    expect((await twilioRows(withRecording))[0]).toMatchObject({ status: 'completed', durationMs: 500 });

    const again = (await (await apiJson(t, 'POST', '/api/call-recordings/poll')).json()) as { details: { callSid: string }[] };
    expect(again.details.map((c) => c.callSid)).not.toContain(withRecording);
    // Scoped: another organisation's poll sees none of these calls.
    const other = (await (await apiJson(t, 'POST', '/api/call-recordings/poll', undefined, 'globex')).json()) as { processed: number; details: unknown[] };
    expect(other).toMatchObject({ processed: 0, details: [] });
  });

  test('the scheduled poll (injected scheduler) imports without anyone asking', async () => {
    const callSid = newCallSid();
    await knownCall(callSid);
    fake.addCompleted(acme, callSid, 700);
    expect(pollTask).toBeDefined();
    pollTask!();
    await expect.poll(async () => (await twilioRows(callSid))[0]?.status, { timeout: 20_000 }).toBe('completed');
  });
});

test('every status the routes answered in this file is documented in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
