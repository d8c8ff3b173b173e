/**
 * The flows users come from (issue 12): Twilio REST start-recording as teams call it (`POST
 * /twilio/start-recording`, `GET /twilio/call-status/{callSid}`), tags and consent on a recording, rate limits
 * on the control routes, the poller's answer, ElevenLabs deliveries linked by `chat_id` / `called_number`, and
 * API keys with scopes and a user. A real gateway (real PostgreSQL, MinIO, sockets); the real `twilio` client
 * talks to a local server answering like Twilio's REST API (test/manage/support.ts).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createControlRateLimiter } from '../../dist/api/manage/rate-limit.js';
import { loadEnv } from '../../dist/config/index.js';
import { toneAmplitude } from '../support/audio.js';
import { fetchRecording, PUBLIC_URL, recordingsOfCall, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { apiJson, completedParams, elevenLabsSignature, FakeTwilio, mpegFrames, postRecordingCallback, TWILIO_LEFT_HZ, TWILIO_RIGHT_HZ } from './support.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../bin/callvault.js');

const accounts = [testAccount('acme'), testAccount('globex')];
const acme = accounts[0]!;
const ELEVENLABS_SECRET = `wsec_${randomBytes(24).toString('hex')}`;
let fake: FakeTwilio;
let t: TestGateway;

beforeAll(async () => {
  fake = await FakeTwilio.start(accounts);
  t = await startTestGateway({
    accounts,
    twilio: { accounts, validateSignatures: true, maxAheadOfClockMs: 10_000, apiBaseUrl: fake.baseUrl },
    elevenlabs: { webhookSecrets: [{ org: 'acme', secret: ELEVENLABS_SECRET }] },
  });
});
afterAll(async () => {
  await t?.dispose();
  await fake?.close();
});

const newCallSid = () => `CA${randomBytes(16).toString('hex')}`;

/** A request with a given API key (or the organisation's bootstrap key). */
function call(method: string, path: string, body?: unknown, opts: { key?: string; org?: string; raw?: string } = {}): Promise<Response> {
  if (!opts.key) return apiJson(t, method, path, body, opts.org ?? 'acme');
  return fetch(`${t.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${opts.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    redirect: 'manual',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function errorOf(res: Response): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  return ((await res.json()) as { error: { code: string; message: string; details?: Record<string, unknown> } }).error;
}

function createRequestsFor(callSid: string) {
  return fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith(`/Calls/${callSid}/Recordings.json`));
}

describe('POST /twilio/start-recording', () => {
  test('a live call of the account that does not stream here: 200 in Twilio-style shape, dual channel, the callback is callvault’s; the completed recording comes in through it', async () => {
    const live = fake.addCall(acme);
    const res = await call('POST', '/twilio/start-recording', { call_sid: live.sid });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({
      success: true,
      recording_sid: expect.stringMatching(/^RE[0-9a-f]{32}$/),
      call_sid: live.sid,
      status: 'in-progress',
      channels: 'dual',
      recording_status_callback: `${PUBLIC_URL}/webhooks/twilio-recording`,
    });
    const [create] = createRequestsFor(live.sid);
    expect(create!.form).toMatchObject({ RecordingChannels: 'dual', RecordingTrack: 'both', RecordingStatusCallback: `${PUBLIC_URL}/webhooks/twilio-recording` });

    // Stopped through the resource API (the request is known here), then Twilio's callback imports it.
    const recordingSid = body['recording_sid'] as string;
    expect((await call('POST', '/api/call-recordings/stop', { recordingSid })).status).toBe(200);
    const imported = await postRecordingCallback(t, acme, completedParams(acme, { sid: recordingSid, callSid: live.sid }));
    expect(((await imported.json()) as { outcome: string }).outcome).toBe('stored');
    const [row] = (await recordingsOfCall(t, 'acme', live.sid)).filter((r) => r.source === 'twilio');
    expect(row).toMatchObject({ status: 'completed', channels: 2, sampleRate: 8000 });
    const decoded = await fetchRecording(t, row!);
    expect(toneAmplitude(decoded.channelSamples[0]!, 8000, TWILIO_LEFT_HZ)).toBeGreaterThan(11900);
    expect(toneAmplitude(decoded.channelSamples[1]!, 8000, TWILIO_RIGHT_HZ)).toBeGreaterThan(11900);
  });

  test('recording_status_callback and recording_channels: mono are passed to Twilio as given', async () => {
    const live = fake.addCall(acme);
    const callback = 'https://crm.example.test/twilio/recording-status';
    const res = await call('POST', '/twilio/start-recording', { call_sid: live.sid, recording_status_callback: callback, recording_channels: 'mono' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ channels: 'mono', recording_status_callback: callback });
    expect(createRequestsFor(live.sid)[0]!.form).toMatchObject({ RecordingChannels: 'mono', RecordingStatusCallback: callback });
  });

  test.each([
    ['{}', {}, /call_sid/],
    ['no body at all', undefined, /call_sid/],
    ['call_sid of the wrong type', { call_sid: 42 }, /call_sid/],
    ['recording_channels other than dual/mono', { call_sid: newCallSid(), recording_channels: 'stereo' }, /recording_channels/],
  ])('%s: 400 BAD_REQUEST whose message names the field', async (_name, body, field) => {
    const res = await call('POST', '/twilio/start-recording', body);
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.message).toMatch(field);
  });

  test('a call Twilio does not know: 404 with Twilio’s message; nothing created', async () => {
    const unknown = newCallSid();
    const res = await call('POST', '/twilio/start-recording', { call_sid: unknown });
    expect(res.status).toBe(404);
    const error = await errorOf(res);
    expect(error).toMatchObject({ code: 'NOT_FOUND', message: `The requested resource /2010-04-01/Accounts/${acme.accountSid}/Calls/${unknown}.json was not found` });
    expect(error.details).toMatchObject({ twilioStatus: 404, twilioCode: 20404 });
    expect(createRequestsFor(unknown)).toEqual([]);
  });

  test('another organisation’s call is unknown to its account (404); an ended call or one Twilio already records is 409', async () => {
    const live = fake.addCall(acme);
    expect((await call('POST', '/twilio/start-recording', { call_sid: live.sid }, { org: 'globex' })).status).toBe(404);
    const ended = fake.addCall(acme, undefined, { status: 'completed' });
    const endedRes = await call('POST', '/twilio/start-recording', { call_sid: ended.sid });
    expect(endedRes.status).toBe(409);
    expect((await errorOf(endedRes)).details).toMatchObject({ twilioCallStatus: 'completed' });
    expect((await call('POST', '/twilio/start-recording', { call_sid: live.sid })).status).toBe(200);
    const twice = await call('POST', '/twilio/start-recording', { call_sid: live.sid });
    expect(twice.status).toBe(409);
    expect((await errorOf(twice)).details).toMatchObject({ twilioRecordingSid: expect.stringMatching(/^RE/) });
  });

  test('the resource form (source: twilio) takes the same options on any live call of the account', async () => {
    const live = fake.addCall(acme);
    const callback = 'https://crm.example.test/cb';
    const res = await call('POST', '/api/call-recordings/start', { callSid: live.sid, source: 'twilio', recordingChannels: 'mono', recordingStatusCallback: callback });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { recording: unknown }).recording).toMatchObject({ source: 'twilio', status: 'in-progress', recordingChannels: 'mono', recordingStatusCallback: callback });
    expect(createRequestsFor(live.sid)[0]!.form).toMatchObject({ RecordingChannels: 'mono', RecordingStatusCallback: callback });
    // Gateway recordings have no Twilio options.
    expect((await call('POST', '/api/call-recordings/start', { callSid: live.sid, recordingChannels: 'mono' })).status).toBe(400);
  });
});

describe('GET /twilio/call-status/{callSid}', () => {
  test('the call’s status at Twilio, its recordings there, and those stored here', async () => {
    const live = fake.addCall(acme, undefined, { from: '+15550100001', to: '+15550100002' });
    const before = await call('GET', `/twilio/call-status/${live.sid}`);
    expect(before.status).toBe(200);
    expect(await before.json()).toMatchObject({ success: true, call_sid: live.sid, status: 'in-progress', from: '+15550100001', to: '+15550100002', recordings: [], stored_recordings: [] });

    const started = (await (await call('POST', '/twilio/start-recording', { call_sid: live.sid })).json()) as { recording_sid: string };
    const during = (await (await call('GET', `/twilio/call-status/${live.sid}`)).json()) as { recordings: unknown[] };
    expect(during.recordings).toEqual([expect.objectContaining({ recording_sid: started.recording_sid, status: 'in-progress', channels: 2, duration: null })]);

    await call('POST', '/api/call-recordings/stop', { recordingSid: started.recording_sid });
    await postRecordingCallback(t, acme, completedParams(acme, { sid: started.recording_sid, callSid: live.sid }));
    live.status = 'completed';
    const after = (await (await call('GET', `/twilio/call-status/${live.sid}`)).json()) as Record<string, unknown>;
    expect(after).toMatchObject({
      status: 'completed',
      duration: 5,
      end_time: expect.any(String),
      recordings: [expect.objectContaining({ recording_sid: started.recording_sid, status: 'completed' })],
      stored_recordings: [expect.objectContaining({ recording_sid: expect.stringMatching(/^CR/), status: 'completed', source: 'twilio', duration_ms: 1000 })],
    });
  });

  test('an unknown call is 404 with Twilio’s message; a malformed sid 400', async () => {
    const res = await call('GET', `/twilio/call-status/${newCallSid()}`);
    expect(res.status).toBe(404);
    expect((await errorOf(res)).message).toMatch(/^The requested resource .*was not found$/);
    expect((await call('GET', '/twilio/call-status/CA%2F..%2Fx')).status).toBe(400);
  });
});

/** A call streamed to the gateway with these custom parameters, recorded (or not) and finished. */
async function streamedCall(customParameters: Record<string, string>, org = 'acme'): Promise<{ callSid: string }> {
  const s = await RawTwilioStream.open(t, accounts.find((a) => a.org === org)!);
  const recorded = !customParameters['recording']?.includes('"enabled":false');
  s.start(customParameters);
  if (recorded) {
    s.media(0, 400, { inbound: 440, outbound: 1000 });
    await s.flushed(t, org, 400);
  } else {
    await s.flushed(t, org, 0);
  }
  s.stop();
  await s.closed;
  if (recorded) await expect.poll(async () => (await recordingsOfCall(t, org, s.callSid))[0]?.status, { timeout: 20_000 }).toBe('completed');
  return { callSid: s.callSid };
}

describe('PATCH /api/call-recordings/{id}: tags and consent', () => {
  test('kept in metadata, answered, and listed; a second PATCH replaces tags and keeps consent', async () => {
    const { callSid } = await streamedCall({});
    const [row] = await recordingsOfCall(t, 'acme', callSid);
    const consent = { given: true, at: '2026-03-01T10:00:00+01:00', by: 'agent:alice' };
    const res = await call('PATCH', `/api/call-recordings/${row!.recordingSid}`, { tags: ['escalation', 'training', 'escalation'], consent });
    expect(res.status).toBe(200);
    const { recording } = (await res.json()) as { recording: { metadata: Record<string, unknown> } };
    expect(recording.metadata).toMatchObject({ tags: ['escalation', 'training'], consent: { given: true, at: '2026-03-01T09:00:00.000Z', by: 'agent:alice' } });

    const listed = (await (await call('GET', `/api/call-recordings?callSid=${callSid}`)).json()) as { recordings: { metadata: Record<string, unknown> }[] };
    expect(listed.recordings[0]!.metadata).toMatchObject({ tags: ['escalation', 'training'], consent: { by: 'agent:alice' } });

    const again = (await (await call('PATCH', `/api/call-recordings/${row!.id}`, { tags: ['qa'] })).json()) as { recording: { metadata: Record<string, unknown> } };
    expect(again.recording.metadata).toMatchObject({ tags: ['qa'], consent: { given: true } });
  });

  test.each([
    ['an empty body', {}],
    ['consent without who', { consent: { given: true, at: '2026-03-01T10:00:00Z' } }],
    ['consent at a date that does not exist', { consent: { given: true, at: '2026-02-30T10:00:00Z', by: 'x' } }],
    ['a tag that is not text', { tags: [7] }],
    ['an unknown field', { tags: ['a'], pauses: [] }],
  ])('%s: 400 BAD_REQUEST', async (_name, body) => {
    const { callSid } = await streamedCallOnce();
    const [row] = await recordingsOfCall(t, 'acme', callSid);
    const res = await call('PATCH', `/api/call-recordings/${row!.recordingSid}`, body);
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe('BAD_REQUEST');
  });

  test('another organisation’s recording is 404', async () => {
    const { callSid } = await streamedCallOnce();
    const [row] = await recordingsOfCall(t, 'acme', callSid);
    expect((await call('PATCH', `/api/call-recordings/${row!.recordingSid}`, { tags: ['x'] }, { org: 'globex' })).status).toBe(404);
  });
});

let onceCall: Promise<{ callSid: string }> | undefined;
function streamedCallOnce(): Promise<{ callSid: string }> {
  onceCall ??= streamedCall({});
  return onceCall;
}

describe('rate limits on control routes', () => {
  test('the 11th control request for one call within a minute is 429 RATE_LIMITED with Retry-After; other calls and organisations are not affected', async () => {
    const live = fake.addCall(acme);
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await call('POST', '/twilio/start-recording', { call_sid: live.sid })).status);
    expect(statuses).toEqual([200, ...Array(9).fill(409)]);
    // The resource form shares the call's budget.
    const limited = await call('POST', '/api/call-recordings/start', { callSid: live.sid, source: 'twilio' });
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);
    expect(await errorOf(limited)).toMatchObject({ code: 'RATE_LIMITED', details: { retryAfterSeconds: retryAfter, limit: 10, windowSeconds: 60 } });

    expect((await call('POST', '/twilio/start-recording', { call_sid: fake.addCall(acme).sid })).status).toBe(200);
    expect((await call('POST', '/twilio/start-recording', { call_sid: live.sid }, { org: 'globex' })).status).toBe(404);
  });

  test('the window slides: once the oldest request is a window old, the next is accepted (injected clock)', () => {
    let now = 1_000_000;
    const limiter = createControlRateLimiter({ limit: 3, windowMs: 60_000, now: () => now });
    limiter.take('acme', 'CA1');
    now += 10_000;
    limiter.take('acme', 'CA1');
    limiter.take('acme', 'CA1');
    let refused: unknown;
    try {
      limiter.take('acme', 'CA1');
    } catch (err) {
      refused = err;
    }
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', details: { retryAfterSeconds: 50 } });
    limiter.take('globex', 'CA1');
    limiter.take('acme', 'CA2');
    now += 50_000;
    expect(() => limiter.take('acme', 'CA1')).not.toThrow();
  });

  test('CONTROL_RATE_LIMIT_PER_MINUTE configures it (default 10); invalid values stop start-up', () => {
    expect(loadEnv({}).CONTROL_RATE_LIMIT_PER_MINUTE).toBe(10);
    expect(loadEnv({ CONTROL_RATE_LIMIT_PER_MINUTE: '30' }).CONTROL_RATE_LIMIT_PER_MINUTE).toBe(30);
    for (const bad of ['0', '-1', 'ten', '1.5']) {
      expect(() => loadEnv({ CONTROL_RATE_LIMIT_PER_MINUTE: bad })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', details: { variables: ['CONTROL_RATE_LIMIT_PER_MINUTE'] } }));
    }
  });
});

describe('POST /api/call-recordings/poll', () => {
  test('a network failure is twilio_error with a mapped code and a fixed message, never the socket’s own text', async () => {
    const dropped = newCallSid();
    await t.gateway.db.calls.upsertActive({ orgId: 'acme', source: 'twilio', externalId: dropped, startedAt: new Date(), metadata: { accountSid: acme.accountSid } });
    fake.droppingCalls.add(dropped);
    const res = await call('POST', '/api/call-recordings/poll');
    expect(res.status).toBe(200);
    const text = await res.text();
    const answer = JSON.parse(text) as { processed: number; details: { callSid: string; status: string; error?: { code: string; message: string } }[] };
    expect(answer.details.find((d) => d.callSid === dropped)).toEqual({
      callSid: dropped,
      status: 'twilio_error',
      recordings: [],
      error: { code: 'STORAGE_UNAVAILABLE', message: 'the Twilio API or object storage is unreachable; the next run retries' },
    });
    expect(text).not.toMatch(/socket|ECONN|hang up|getaddrinfo|ENOTFOUND/i);
    fake.droppingCalls.delete(dropped);
  });
});

describe('ElevenLabs deliveries linked like the flow users come from', () => {
  const MPEG = { header: [0xff, 0xfb, 0x90, 0xc0], length: 417 };
  async function deliver(dynamicVariables: Record<string, string>): Promise<{ recordingSid: string }> {
    const body = JSON.stringify({
      type: 'post_call_audio',
      event_timestamp: Math.floor(Date.now() / 1000),
      data: {
        agent_id: 'agent_support',
        conversation_id: `conv_${randomBytes(12).toString('hex')}`,
        full_audio: mpegFrames(MPEG, 40).toString('base64'),
        conversation_initiation_client_data: { dynamic_variables: dynamicVariables },
      },
    });
    const res = await fetch(`${t.httpUrl}/webhooks/elevenlabs-post-call`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'elevenlabs-signature': elevenLabsSignature(body, ELEVENLABS_SECRET, Math.floor(Date.now() / 1000)) },
      body,
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { recordingSid: string };
  }
  async function callOf(recordingSid: string): Promise<{ callSid: string; metadata: Record<string, unknown> }> {
    const { recording } = (await (await call('GET', `/api/call-recordings/${recordingSid}`)).json()) as { recording: { callSid: string; metadata: Record<string, unknown> } };
    return recording;
  }

  test.each([
    ['the call id (uuid)', (c: { id: string; externalId: string }) => c.id],
    ['the CallSid', (c: { id: string; externalId: string }) => c.externalId],
  ])('chat_id naming %s links the audio to that call', async (_name, chatIdOf) => {
    const { callSid } = await streamedCall({ recording: JSON.stringify({ enabled: false }) });
    const row = (await t.gateway.db.calls.getByExternalId('acme', callSid, 'twilio'))!;
    const { recordingSid } = await deliver({ chat_id: chatIdOf(row), called_number: '+15550009999' });
    expect(await callOf(recordingSid)).toMatchObject({ callSid, metadata: { linkedBy: 'chat_id', chatId: chatIdOf(row) } });
  });

  test('without chat_id: the latest call to called_number that has no recording; then (it has one) the conversation’s own call', async () => {
    const number = `+1555${randomBytes(3).readUIntBE(0, 3).toString().padStart(7, '0')}`;
    await streamedCall({ recording: JSON.stringify({ enabled: false }), calledNumber: number });
    const latest = await streamedCall({ recording: JSON.stringify({ enabled: false }), calledNumber: number });
    const first = await deliver({ called_number: number });
    expect(await callOf(first.recordingSid)).toMatchObject({ callSid: latest.callSid, metadata: { linkedBy: 'called_number' } });
    // The latest call now has a recording: the next one goes to the earlier call without one.
    const second = await deliver({ called_number: number });
    expect((await callOf(second.recordingSid)).callSid).not.toBe(latest.callSid);
    expect(await callOf(second.recordingSid)).toMatchObject({ metadata: { linkedBy: 'called_number' } });
    const third = await deliver({ called_number: number });
    expect(await callOf(third.recordingSid)).toMatchObject({ callSid: expect.stringMatching(/^conv_/), metadata: { linkedBy: 'conversation_id' } });
  });

  test('a chat_id that names no call of the organisation falls back to the conversation id', async () => {
    const { recordingSid } = await deliver({ chat_id: 'chat-does-not-exist' });
    expect(await callOf(recordingSid)).toMatchObject({ callSid: expect.stringMatching(/^conv_/), metadata: { linkedBy: 'conversation_id' } });
  });
});

describe('API key scopes and users', () => {
  test('a key without the scope a route needs is 403 FORBIDDEN naming the scope; the bootstrap key (every scope) works everywhere', async () => {
    const { key: readKey } = await t.gateway.db.apiKeys.create('acme', { scopes: ['read'] });
    const { key: controlKey } = await t.gateway.db.apiKeys.create('acme', { scopes: ['control'] });
    const { callSid } = await streamedCallOnce();
    const [row] = await recordingsOfCall(t, 'acme', callSid);
    const cases: [string, string, unknown, string, string][] = [
      [readKey, 'POST', { call_sid: newCallSid() }, '/twilio/start-recording', 'control'],
      [readKey, 'PATCH', { tags: ['x'] }, `/api/call-recordings/${row!.recordingSid}`, 'control'],
      [readKey, 'DELETE', undefined, `/api/call-recordings/${row!.recordingSid}`, 'delete'],
      [readKey, 'DELETE', undefined, `/calls/${callSid}/recording`, 'delete'],
      [controlKey, 'GET', undefined, `/api/call-recordings/${row!.recordingSid}`, 'read'],
      [controlKey, 'PUT', { options: { recording: { enabled: true } } }, '/api/agents/agent-1', 'admin'],
    ];
    for (const [key, method, body, path, scope] of cases) {
      const res = await call(method, path, body, { key });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await errorOf(res)).toMatchObject({ code: 'FORBIDDEN', details: { requiredScope: scope } });
    }
    expect((await call('GET', `/api/call-recordings/${row!.recordingSid}`, undefined, { key: readKey })).status).toBe(200);
    expect((await call('PATCH', `/api/call-recordings/${row!.recordingSid}`, { tags: ['ok'] }, { key: controlKey })).status).toBe(200);
    expect((await call('PUT', '/api/agents/agent-1', { options: { recording: { enabled: true } } })).status).toBe(201);
    expect((await call('GET', `/api/call-recordings/${row!.recordingSid}`)).status).toBe(200);
  });

  test('`npx callvault keys create --org acme --scope read --user u123` makes a key that sees only u123’s calls', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'keys', 'create', '--org', 'acme', '--scope', 'read', '--user', 'u123', '--json'], {
      env: { PATH: process.env['PATH'], DATABASE_URL: t.databaseUrl },
    });
    const created = JSON.parse(stdout) as { key: string; scopes: string[]; userId: string };
    expect(created).toMatchObject({ scopes: ['read'], userId: 'u123' });
    const listed = await run(process.execPath, [CLI, 'keys', 'list', '--org', 'acme'], { env: { PATH: process.env['PATH'], DATABASE_URL: t.databaseUrl } });
    expect(listed.stdout).toMatch(/read\s+u123/);
    expect(listed.stdout).not.toContain(created.key);

    const mine = await streamedCall({ userId: 'u123' });
    const theirs = await streamedCall({ userId: 'u456' });
    const untagged = await streamedCallOnce();
    const key = created.key;

    const list = (await (await call('GET', '/api/call-recordings?limit=100', undefined, { key })).json()) as { total: number; recordings: { callSid: string }[] };
    expect(list.recordings.map((r) => r.callSid)).toEqual([mine.callSid]);
    expect(list.total).toBe(1);
    // The organisation's key sees all three.
    const all = (await (await call('GET', '/api/call-recordings?limit=100')).json()) as { recordings: { callSid: string }[] };
    expect(all.recordings.map((r) => r.callSid)).toEqual(expect.arrayContaining([mine.callSid, theirs.callSid, untagged.callSid]));

    const [theirRow] = await recordingsOfCall(t, 'acme', theirs.callSid);
    const [myRow] = await recordingsOfCall(t, 'acme', mine.callSid);
    expect((await call('GET', `/api/call-recordings/${theirRow!.recordingSid}`, undefined, { key })).status).toBe(404);
    expect((await call('GET', `/api/call-recordings/${theirRow!.recordingSid}/media`, undefined, { key })).status).toBe(404);
    expect((await call('GET', `/calls/${theirs.callSid}/recording`, undefined, { key })).status).toBe(404);
    expect((await call('GET', `/calls/${untagged.callSid}/recording`, undefined, { key })).status).toBe(404);
    expect((await call('GET', `/api/call-recordings/${myRow!.recordingSid}`, undefined, { key })).status).toBe(200);
    const media = await call('GET', `/calls/${mine.callSid}/recording`, undefined, { key });
    expect(media.status).toBe(200);
    expect(media.headers.get('content-type')).toBe('audio/wav');
    await media.arrayBuffer();
  });

  test('a user-bound control key cannot run the organisation-wide poller or change agent policy (403), and controls only its user’s calls', async () => {
    const { key } = await t.gateway.db.apiKeys.create('acme', { scopes: ['read', 'control', 'admin'], userId: 'u789' });
    const poll = await call('POST', '/api/call-recordings/poll', undefined, { key });
    expect(poll.status).toBe(403);
    expect(await errorOf(poll)).toMatchObject({ code: 'FORBIDDEN', details: { userBound: true } });
    expect((await call('DELETE', '/api/agents/agent-1', undefined, { key })).status).toBe(403);
    // A Twilio call the gateway never saw is not tagged with anyone: not this user's.
    const live = fake.addCall(acme);
    expect((await call('POST', '/twilio/start-recording', { call_sid: live.sid }, { key })).status).toBe(404);
    expect((await call('GET', `/twilio/call-status/${live.sid}`, undefined, { key })).status).toBe(404);
    expect(createRequestsFor(live.sid)).toEqual([]);
    // Its own user's call (streamed with userId u789, still live at Twilio) it can start, see and stop.
    const own = await streamedCall({ userId: 'u789', recording: JSON.stringify({ enabled: false }) });
    fake.addCall(acme, own.callSid);
    const started = await call('POST', '/twilio/start-recording', { call_sid: own.callSid }, { key });
    expect(started.status).toBe(200);
    const { recording_sid } = (await started.json()) as { recording_sid: string };
    expect((await call('GET', `/twilio/call-status/${own.callSid}`, undefined, { key })).status).toBe(200);
    // Another user's key cannot touch that recording.
    const { key: other } = await t.gateway.db.apiKeys.create('acme', { scopes: ['control'], userId: 'u000' });
    expect((await call('POST', `/api/call-recordings/${recording_sid}/pause`, {}, { key: other })).status).toBe(404);
    expect((await call('POST', '/api/call-recordings/stop', { recordingSid: recording_sid }, { key })).status).toBe(200);
  });
});

test('every status the routes answered in this file is documented in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
