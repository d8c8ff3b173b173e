/**
 * SignalWire as a source, end to end on real sockets: streams at /signalwire/media (Twilio's protocol with
 * SignalWire's UUID identifiers and X-SignalWire-Signature keyed by the project token), recorded and checked tone
 * by tone per channel; the SID relaxation applies to SignalWire only; and SignalWire-side recordings through the
 * REST flow (start, pause, resume, stop, status callback, poller) against a local server answering like a Space's
 * LaML (Compatibility) API, reached by the real `twilio` client.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import twilio from 'twilio';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  buildStartMessage,
  randomCallSid,
  randomStreamSid,
  signStreamUrl,
  simulateTwilioCall,
} from '../../dist/ingest/twilio/index.js';
import { sliceMs, toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, fetchRecording, recordingsOfCall, startTestGateway, testAccount, type TestAccount, type TestGateway } from '../support/gateway.js';
import { api, decodeWav, recordingPath } from '../api/support.js';
import { apiJson, FakeTwilio, TWILIO_LEFT_HZ, TWILIO_RIGHT_HZ, type FakeRecording } from '../manage/support.js';

const CALLER_HZ = 440;
const AGENT_HZ = 1000;
const SIGNALWIRE_SIGNED_URL = `${PUBLIC_URL.replace('https', 'wss')}/signalwire/media`;
const TWILIO_SIGNED_URL = `${PUBLIC_URL.replace('https', 'wss')}/twilio/media`;
const CALLBACK_URL = `${PUBLIC_URL}/webhooks/signalwire-recording`;

/** A SignalWire project as the tests hold it: the project id is the account, the token signs and authenticates. */
function signalWireProject(org: string): TestAccount {
  return { org, accountSid: randomUUID(), authToken: `PT${randomBytes(24).toString('hex')}` };
}

const twilioAccounts = [testAccount('acme'), testAccount('globex')];
const projects = [signalWireProject('acme'), signalWireProject('globex')];
const acmeProject = projects[0]!;
const acmeTwilio = twilioAccounts[0]!;
let space: FakeTwilio;
let t: TestGateway;

beforeAll(async () => {
  space = await FakeTwilio.start(projects, { carrier: 'signalwire' });
  t = await startTestGateway({
    accounts: twilioAccounts,
    twilio: { accounts: twilioAccounts, validateSignatures: true, maxAheadOfClockMs: 10_000, deleteAfterImport: true },
    signalwire: { projects: projects.map((p) => ({ org: p.org, projectId: p.accountSid, token: p.authToken, spaceUrl: space.baseUrl })) },
  });
});
afterAll(async () => {
  await t?.dispose();
  await space?.close();
});

function signalWireUrl(): string {
  return `ws://127.0.0.1:${t.gateway.port}/signalwire/media`;
}

function signalWireCall(options: Partial<Parameters<typeof simulateTwilioCall>[0]> = {}) {
  return simulateTwilioCall({
    carrier: 'signalwire',
    url: signalWireUrl(),
    signedUrl: SIGNALWIRE_SIGNED_URL,
    accountSid: acmeProject.accountSid,
    authToken: acmeProject.authToken,
    durationMs: 2000,
    inbound: { kind: 'tone', frequencyHz: CALLER_HZ, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: AGENT_HZ, amplitude: 0.4 },
    ...options,
  });
}

/** Opens a socket on `path` with these upgrade headers: its close, or the HTTP status that refused it. */
async function openRaw(path: string, headers: Record<string, string>): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${t.gateway.port}${path}`, { headers });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error('refused'), { status: res.statusCode })));
  });
  return { ws, closed };
}

async function refusedStatus(path: string, headers: Record<string, string>): Promise<number> {
  try {
    const { ws } = await openRaw(path, headers);
    ws.close();
    return 101;
  } catch (err) {
    return (err as { status: number }).status;
  }
}

describe('SignalWire Media Streams at /signalwire/media', () => {
  test('a signed stream is recorded: caller left, agent right, exact duration; the call is a SignalWire call with a UUID id', async () => {
    const result = await signalWireCall({ durationMs: 3000 });
    expect(result.closeCode).toBe(1000);
    expect(result.callSid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const rows = await recordingsOfCall(t, 'acme', result.callSid);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({ status: 'completed', source: 'gateway', channels: 2, sampleRate: 16000, durationMs: 3000 });
    expect(row.metadata).toMatchObject({ accountSid: acmeProject.accountSid, streamSid: result.streamSid });
    const call = await t.gateway.db.calls.getByExternalId('acme', result.callSid, 'signalwire');
    expect(call).toMatchObject({ source: 'signalwire', status: 'ended', metadata: { accountSid: acmeProject.accountSid } });

    const rec = await fetchRecording(t, row);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(3 * 16000);
    const expected = 0.4 * 32767;
    const leftMid = sliceMs(left, 16000, 200, 2800);
    const rightMid = sliceMs(right, 16000, 200, 2800);
    expect(toneAmplitude(leftMid, 16000, CALLER_HZ)).toBeGreaterThan(expected * 0.9);
    expect(toneAmplitude(leftMid, 16000, AGENT_HZ)).toBeLessThan(expected * 0.01);
    expect(toneAmplitude(rightMid, 16000, AGENT_HZ)).toBeGreaterThan(expected * 0.9);
    expect(toneAmplitude(rightMid, 16000, CALLER_HZ)).toBeLessThan(expected * 0.01);

    // Served by the call route under its UUID, and listed with the SignalWire call.
    const wav = decodeWav(new Uint8Array(await (await api(t, recordingPath(result.callSid))).arrayBuffer()));
    expect(wav.channels).toBe(2);
    expect(toneAmplitude(sliceMs(wav.channelSamples[0]!, 16000, 200, 2800), 16000, CALLER_HZ)).toBeGreaterThan(expected * 0.9);
    const listed = (await (await apiJson(t, 'GET', `/api/call-recordings?callSid=${result.callSid}`)).json()) as any;
    expect(listed.recordings).toHaveLength(1);
    expect(listed.recordings[0]).toMatchObject({ callSid: result.callSid, source: 'gateway' });
    const got = (await (await apiJson(t, 'GET', `/api/call-recordings/${row.recordingSid}`)).json()) as any;
    expect(got.recording.call).toMatchObject({ callSid: result.callSid, source: 'signalwire' });
  });

  test('npm run simulate -- --signalwire places a SignalWire call with the project credentials and prints its UUID', async () => {
    const cli = join(import.meta.dirname, '../../dist/tools/simulate.js');
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [
      cli,
      '--signalwire',
      '--url',
      signalWireUrl(),
      '--signed-url',
      SIGNALWIRE_SIGNED_URL,
      '--project-id',
      acmeProject.accountSid,
      '--token',
      acmeProject.authToken,
      '--duration',
      '1',
    ]);
    expect(stderr).toContain('SignalWire');
    const callSid = stdout.trim().split('\n').pop() ?? '';
    expect(callSid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const [row] = await recordingsOfCall(t, 'acme', callSid);
    expect(row).toMatchObject({ status: 'completed', durationMs: 1000, channels: 2 });
    const [left, right] = (await fetchRecording(t, row!)).channelSamples as [Int16Array, Int16Array];
    // The CLI's default tones: 440 Hz caller, 1000 Hz agent, at half scale.
    expect(toneAmplitude(sliceMs(left, 16000, 100, 900), 16000, CALLER_HZ)).toBeGreaterThan(0.5 * 32767 * 0.9);
    expect(toneAmplitude(sliceMs(right, 16000, 100, 900), 16000, AGENT_HZ)).toBeGreaterThan(0.5 * 32767 * 0.9);
    expect(await t.gateway.db.calls.getByExternalId('acme', callSid, 'signalwire')).toMatchObject({ source: 'signalwire' });
  });

  test('a project of another organisation records into that organisation only', async () => {
    const globex = projects[1]!;
    const result = await signalWireCall({ accountSid: globex.accountSid, authToken: globex.authToken, durationMs: 400 });
    expect(result.closeCode).toBe(1000);
    expect(await recordingsOfCall(t, 'globex', result.callSid)).toHaveLength(1);
    expect(await recordingsOfCall(t, 'acme', result.callSid)).toHaveLength(0);
  });

  test('X-Twilio-Signature made with the project token is taken when X-SignalWire-Signature is absent', async () => {
    const signature = signStreamUrl(acmeProject.authToken, SIGNALWIRE_SIGNED_URL);
    const { ws, closed } = await openRaw('/signalwire/media', { 'X-Twilio-Signature': signature });
    ws.close(1000);
    await closed;
  });

  const good = () => signStreamUrl(acmeProject.authToken, SIGNALWIRE_SIGNED_URL);
  test.each([
    ['no signature', () => ({})],
    ['an X-SignalWire-Signature made with another token', () => ({ 'X-SignalWire-Signature': signStreamUrl(randomBytes(16).toString('hex'), SIGNALWIRE_SIGNED_URL) })],
    ['an X-SignalWire-Signature of another URL', () => ({ 'X-SignalWire-Signature': signStreamUrl(acmeProject.authToken, `${SIGNALWIRE_SIGNED_URL}?x=1`) })],
    ['a garbage X-SignalWire-Signature', () => ({ 'X-SignalWire-Signature': 'bm90IGEgc2lnbmF0dXJl' })],
    ['a bad X-SignalWire-Signature next to a good X-Twilio-Signature', () => ({ 'X-SignalWire-Signature': 'bm90IGEgc2lnbmF0dXJl', 'X-Twilio-Signature': good() })],
    ['a Twilio account signing the SignalWire URL', () => ({ 'X-SignalWire-Signature': signStreamUrl(acmeTwilio.authToken, SIGNALWIRE_SIGNED_URL) })],
  ] as const)('%s: HTTP 403 before any audio', async (_name, headers) => {
    expect(await refusedStatus('/signalwire/media', headers())).toBe(403);
  });

  test('TWILIO_SIGNATURE_VALIDATION=false lets unsigned SignalWire streams in, owned by the project they name', async () => {
    const unsigned = await startTestGateway({
      accounts: twilioAccounts,
      twilio: { accounts: twilioAccounts, validateSignatures: false, maxAheadOfClockMs: 10_000 },
      signalwire: { projects: [{ org: 'globex', projectId: acmeProject.accountSid, token: acmeProject.authToken, spaceUrl: space.baseUrl }] },
    });
    try {
      const result = await signalWireCall({ url: `ws://127.0.0.1:${unsigned.gateway.port}/signalwire/media`, signature: null, durationMs: 400 });
      expect(result.closeCode).toBe(1000);
      expect(await recordingsOfCall(unsigned, 'globex', result.callSid)).toHaveLength(1);
    } finally {
      await unsigned.dispose();
    }
  });

  test('a project token does not open Twilio streams', async () => {
    expect(await refusedStatus('/twilio/media', { 'X-Twilio-Signature': signStreamUrl(acmeProject.authToken, TWILIO_SIGNED_URL) })).toBe(403);
    expect(await refusedStatus('/twilio/media', { 'X-SignalWire-Signature': signStreamUrl(acmeProject.authToken, TWILIO_SIGNED_URL) })).toBe(403);
  });
});

describe('UUID identifiers are accepted on SignalWire streams only', () => {
  const uuid = () => randomUUID();
  type Case = [name: string, path: '/twilio/media' | '/signalwire/media', ids: () => { accountSid: string; callSid: string; streamSid: string }];
  const cases: Case[] = [
    ['Twilio stream with a UUID call SID', '/twilio/media', () => ({ accountSid: acmeTwilio.accountSid, callSid: uuid(), streamSid: randomStreamSid() })],
    ['Twilio stream with a UUID stream SID', '/twilio/media', () => ({ accountSid: acmeTwilio.accountSid, callSid: randomCallSid(), streamSid: uuid() })],
    ['SignalWire stream with a CA… call SID', '/signalwire/media', () => ({ accountSid: acmeProject.accountSid, callSid: randomCallSid(), streamSid: uuid() })],
    ['SignalWire stream with an MZ… stream SID', '/signalwire/media', () => ({ accountSid: acmeProject.accountSid, callSid: uuid(), streamSid: randomStreamSid() })],
    ['SignalWire stream with an upper-case UUID missing a group', '/signalwire/media', () => ({ accountSid: acmeProject.accountSid, callSid: uuid().slice(0, 23).toUpperCase(), streamSid: uuid() })],
  ];

  test.each(cases)('%s: closed with 4400 FRAME_MALFORMED, nothing recorded', async (_name, path, ids) => {
    const signed = path === '/twilio/media' ? TWILIO_SIGNED_URL : SIGNALWIRE_SIGNED_URL;
    const headers: Record<string, string> =
      path === '/twilio/media'
        ? { 'X-Twilio-Signature': signStreamUrl(acmeTwilio.authToken, signed) }
        : { 'X-SignalWire-Signature': signStreamUrl(acmeProject.authToken, signed) };
    const { ws, closed } = await openRaw(path, headers);
    const { accountSid, callSid, streamSid } = ids();
    ws.send(buildStartMessage({ sequenceNumber: 1, accountSid, callSid, streamSid, tracks: ['inbound'] }));
    expect(await closed).toEqual({ code: 4400, reason: 'FRAME_MALFORMED' });
    expect(await recordingsOfCall(t, 'acme', callSid)).toEqual([]);
  });

  test('a SignalWire stream naming another project than the one that signed it: 4403', async () => {
    const { ws, closed } = await openRaw('/signalwire/media', { 'X-SignalWire-Signature': signStreamUrl(acmeProject.authToken, SIGNALWIRE_SIGNED_URL) });
    ws.send(buildStartMessage({ sequenceNumber: 1, accountSid: projects[1]!.accountSid, callSid: uuid(), streamSid: uuid(), tracks: ['inbound'] }));
    expect((await closed).code).toBe(4403);
  });
});

describe('SignalWire-side recordings through the Space REST API', () => {
  const callbackParams = (rec: Pick<FakeRecording, 'sid' | 'callSid'>, project = acmeProject, status = 'completed') => ({
    AccountSid: project.accountSid,
    CallSid: rec.callSid,
    RecordingSid: rec.sid,
    RecordingUrl: `https://example.signalwire.com/api/laml/2010-04-01/Accounts/${project.accountSid}/Recordings/${rec.sid}`,
    RecordingStatus: status,
    RecordingDuration: '1',
    RecordingChannels: '2',
    RecordingStartTime: 'Tue, 01 Jan 2030 00:00:00 +0000',
    RecordingSource: 'StartCallRecordingAPI',
  });

  function postCallback(params: Record<string, string>, headers?: Record<string, string>): Promise<Response> {
    const signature = twilio.getExpectedTwilioSignature(acmeProject.authToken, CALLBACK_URL, params);
    return fetch(`${t.httpUrl}/webhooks/signalwire-recording`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(headers ?? { 'x-signalwire-signature': signature }) },
      body: new URLSearchParams(params).toString(),
    });
  }

  async function signalWireRows(callSid: string) {
    return (await recordingsOfCall(t, 'acme', callSid)).filter((r) => r.source === 'signalwire');
  }

  test('completed callback: fetched from the Space with the project credentials, stored per channel, source signalwire', async () => {
    const rec = space.addCompleted(acmeProject, randomUUID(), 1500);
    const res = await postCallback(callbackParams(rec));
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ outcome: 'stored', recordingSid: expect.stringMatching(/^CR[0-9a-f]{32}$/) });
    const download = space.requests.find((r) => r.method === 'GET' && r.path.endsWith(`${rec.sid}.wav`));
    expect(download?.path).toBe(`/api/laml/2010-04-01/Accounts/${acmeProject.accountSid}/Recordings/${rec.sid}.wav`);

    const [row] = await signalWireRows(rec.callSid);
    expect(row).toMatchObject({ status: 'completed', source: 'signalwire', channels: 2, sampleRate: 8000, durationMs: 1500 });
    expect(row!.metadata).toMatchObject({ signalwireRecordingSid: rec.sid, accountSid: acmeProject.accountSid, deletedFromSignalWireAt: expect.any(String) });
    // TWILIO_DELETE_AFTER_IMPORT: removed from the Space once stored here.
    expect(rec.deleted).toBe(true);
    expect(space.requests.some((r) => r.method === 'DELETE' && r.path === `/api/laml/2010-04-01/Accounts/${acmeProject.accountSid}/Recordings/${rec.sid}.json`)).toBe(true);
    const decoded = await fetchRecording(t, row!);
    const [left, right] = decoded.channelSamples as [Int16Array, Int16Array];
    expect(toneAmplitude(left, 8000, TWILIO_LEFT_HZ)).toBeGreaterThan(11900);
    expect(toneAmplitude(left, 8000, TWILIO_RIGHT_HZ)).toBeLessThan(5);
    expect(toneAmplitude(right, 8000, TWILIO_RIGHT_HZ)).toBeGreaterThan(11900);
    expect(toneAmplitude(right, 8000, TWILIO_LEFT_HZ)).toBeLessThan(5);
    expect(await t.gateway.db.calls.getByExternalId('acme', rec.callSid, 'signalwire')).toMatchObject({ source: 'signalwire', status: 'ended' });

    const listed = (await (await apiJson(t, 'GET', '/api/call-recordings?source=signalwire')).json()) as any;
    expect(listed.recordings.map((r: any) => r.recordingSid)).toContain(body.recordingSid);
    expect(listed.recordings.every((r: any) => r.source === 'signalwire')).toBe(true);

    const retry = (await (await postCallback(callbackParams(rec))).json()) as any;
    expect(retry.outcome).toBe('duplicate');
  });

  test.each([
    ['no signature', () => ({})],
    ['a signature made with another token', (p: Record<string, string>) => ({ 'x-signalwire-signature': twilio.getExpectedTwilioSignature('other-token', CALLBACK_URL, p) })],
    ['a garbage signature', () => ({ 'x-signalwire-signature': 'bm90IGEgc2lnbmF0dXJl' })],
    ['the Twilio account of the organisation signing it', (p: Record<string, string>) => ({ 'x-signalwire-signature': twilio.getExpectedTwilioSignature(acmeTwilio.authToken, CALLBACK_URL, p) })],
  ] as const)('callback with %s: 403 SIGNATURE_INVALID, nothing fetched or stored', async (_name, headers) => {
    const rec = space.addCompleted(acmeProject, randomUUID());
    const params = callbackParams(rec);
    const res = await postCallback(params, headers(params));
    expect(res.status).toBe(403);
    expect(((await res.json()) as any).error.code).toBe('SIGNATURE_INVALID');
    expect(space.requests.filter((r) => r.path.includes(rec.sid))).toEqual([]);
    expect(await signalWireRows(rec.callSid)).toEqual([]);
  });

  test('a callback signed in X-Twilio-Signature with the project token (the alias) is taken when X-SignalWire-Signature is absent', async () => {
    const rec = space.addCompleted(acmeProject, randomUUID());
    const params = callbackParams(rec);
    const res = await postCallback(params, { 'x-twilio-signature': twilio.getExpectedTwilioSignature(acmeProject.authToken, CALLBACK_URL, params) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).outcome).toBe('stored');
    expect(await signalWireRows(rec.callSid)).toHaveLength(1);
  });

  test('an unknown project answers exactly like a bad signature', async () => {
    const stranger = signalWireProject('acme');
    const params = callbackParams({ sid: randomUUID(), callSid: randomUUID() }, stranger);
    const unknown = await fetch(`${t.httpUrl}/webhooks/signalwire-recording`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-signalwire-signature': twilio.getExpectedTwilioSignature(stranger.authToken, CALLBACK_URL, params) },
      body: new URLSearchParams(params).toString(),
    });
    const badSignature = await postCallback(callbackParams({ sid: randomUUID(), callSid: randomUUID() }), { 'x-signalwire-signature': 'bm90IGEgc2lnbmF0dXJl' });
    expect(unknown.status).toBe(403);
    expect(await unknown.json()).toEqual(await badSignature.json());
  });

  test('Twilio-shaped SIDs are refused on the SignalWire callback, UUIDs on the Twilio one', async () => {
    const twilioShaped = await postCallback(callbackParams({ sid: `RE${randomBytes(16).toString('hex')}`, callSid: randomCallSid() }));
    expect(twilioShaped.status).toBe(400);
    const uuidParams = { AccountSid: acmeTwilio.accountSid, CallSid: randomUUID(), RecordingSid: randomUUID(), RecordingStatus: 'completed' };
    const onTwilio = await fetch(`${t.httpUrl}/webhooks/twilio-recording`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-twilio-signature': twilio.getExpectedTwilioSignature(acmeTwilio.authToken, `${PUBLIC_URL}/webhooks/twilio-recording`, uuidParams),
      },
      body: new URLSearchParams(uuidParams).toString(),
    });
    expect(onTwilio.status).toBe(400);
  });

  test('start through the API on a live SignalWire call, pause, resume, stop, then the callback imports it', async () => {
    const callSid = randomUUID();
    await t.gateway.db.calls.upsertActive({ orgId: 'acme', source: 'signalwire', externalId: callSid, startedAt: new Date(), metadata: { accountSid: acmeProject.accountSid } });
    // Live at the Space: start-recording asks it about the call first, as it asks Twilio.
    space.addCall(acmeProject, callSid);
    const started = await apiJson(t, 'POST', '/api/call-recordings/start', { callSid, source: 'signalwire' });
    expect(started.status).toBe(201);
    const { recording } = (await started.json()) as any;
    expect(recording).toMatchObject({ source: 'signalwire', status: 'in-progress', recordingSid: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    const create = space.requests.find((r) => r.method === 'POST' && r.path.endsWith(`/Calls/${callSid}/Recordings.json`))!;
    expect(create.path).toBe(`/api/laml/2010-04-01/Accounts/${acmeProject.accountSid}/Calls/${callSid}/Recordings.json`);
    expect(create.form).toMatchObject({ RecordingChannels: 'dual', RecordingStatusCallback: CALLBACK_URL });

    // The same call is not a Twilio call: a Twilio-side start finds nothing.
    expect((await apiJson(t, 'POST', '/api/call-recordings/start', { callSid, source: 'twilio' })).status).toBe(404);

    const paused = await apiJson(t, 'POST', `/api/call-recordings/${recording.recordingSid}/pause`, { behavior: 'skip' });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ source: 'signalwire', status: 'paused', paused: true });
    expect(space.recordings.get(recording.recordingSid)).toMatchObject({ status: 'paused', pauseBehavior: 'skip' });
    const resumed = await apiJson(t, 'POST', `/api/call-recordings/${recording.recordingSid}/resume`);
    expect(await resumed.json()).toMatchObject({ source: 'signalwire', status: 'in-progress', paused: false });
    const stopped = await apiJson(t, 'POST', '/api/call-recordings/stop', { recordingSid: recording.recordingSid });
    expect(stopped.status).toBe(200);
    expect(((await stopped.json()) as any).stopped).toEqual([{ recordingSid: recording.recordingSid, source: 'signalwire', status: 'stopped' }]);

    const res = await postCallback(callbackParams({ sid: recording.recordingSid, callSid }));
    expect(((await res.json()) as any).outcome).toBe('stored');
    const [row] = await signalWireRows(callSid);
    expect(row).toMatchObject({ source: 'signalwire', status: 'completed', channels: 2 });
  });

  test('the poller finds completed SignalWire recordings of recent SignalWire calls', async () => {
    const callSid = randomUUID();
    await t.gateway.db.calls.upsertActive({ orgId: 'acme', source: 'signalwire', externalId: callSid, startedAt: new Date(), metadata: { accountSid: acmeProject.accountSid } });
    const rec = space.addCompleted(acmeProject, callSid, 1000);
    const res = await apiJson(t, 'POST', '/api/call-recordings/poll');
    expect(res.status).toBe(200);
    const polled = ((await res.json()) as any).details.find((c: any) => c.callSid === callSid);
    expect(polled).toMatchObject({ status: 'uploaded', recordings: [expect.stringMatching(/^CR/)] });
    expect(space.requests.some((r) => r.method === 'GET' && r.path === `/api/laml/2010-04-01/Accounts/${acmeProject.accountSid}/Calls/${callSid}/Recordings.json`)).toBe(true);
    const [row] = await signalWireRows(callSid);
    expect(row!.metadata).toMatchObject({ signalwireRecordingSid: rec.sid });
  });
});
