/**
 * A captured X-Twilio-Signature signs only the stream URL, so it opens any number of streams. Replaying it must
 * never shadow the real recording: a streamSid starts once per call, a later stream of a call is recorded on its
 * own (`primary: false`) without ending the call's row, and GET /calls/{id}/recording keeps serving the call's
 * first stream. Stream tokens (`?token=`) bind a stream URL to one CallSid and an expiry; an organisation can
 * require them.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomCallSid, signStreamToken, twilioStreamUrl } from '../../dist/ingest/twilio/index.js';
import { runCli } from '../../dist/cli/index.js';
import { toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, recordingsOfCall, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { api, apiKeyOf, decodeWav, recordingPath } from '../api/support.js';

let t: TestGateway;
let strict: TestGateway;
let unsigned: TestGateway;

beforeAll(async () => {
  t = await startTestGateway();
  const accounts = [testAccount('acme'), testAccount('globex')];
  strict = await startTestGateway({
    accounts,
    twilio: { accounts, validateSignatures: true, maxAheadOfClockMs: 10_000, streamTokenRequired: ['acme'] },
  });
  const unsignedAccounts = [testAccount('acme')];
  unsigned = await startTestGateway({
    accounts: unsignedAccounts,
    twilio: { accounts: unsignedAccounts, validateSignatures: false, maxAheadOfClockMs: 10_000, streamTokenRequired: '*' },
  });
});
afterAll(async () => {
  await t?.dispose();
  await strict?.dispose();
  await unsigned?.dispose();
});

const completed = async (gw: TestGateway, callSid: string, count: number) =>
  expect.poll(async () => (await recordingsOfCall(gw, 'acme', callSid)).filter((r) => r.status === 'completed').length, { timeout: 20_000 }).toBe(count);

describe('a replayed upgrade signature', () => {
  test('a later stream of a live call is recorded apart, never ends the call, and is never what the call route serves', async () => {
    const acme = t.accounts[0]!;
    const real = await RawTwilioStream.open(t, acme);
    real.start();
    real.media(0, 3000, { inbound: 440, outbound: 1000 });
    await real.flushed(t, 'acme', 3000);

    // The replay: the same signed URL, the same CallSid, a stream of its own, 1 s of other tones, stopped at once.
    const replay = await RawTwilioStream.open(t, acme, { callSid: real.callSid });
    replay.start();
    replay.media(0, 1000, { inbound: 2000, outbound: 2000 });
    replay.stop();
    expect((await replay.closed).code).toBe(1000);
    await completed(t, real.callSid, 1);

    const rows = await recordingsOfCall(t, 'acme', real.callSid);
    expect(rows).toHaveLength(2);
    const replayed = rows.find((r) => r.status === 'completed')!;
    expect(replayed.metadata).toMatchObject({ primary: false, streamSid: replay.streamSid });
    expect(replayed.durationMs).toBe(1000);
    // The real call is still going: its row was not ended by the replay, and its recording is the one in progress.
    expect(await t.gateway.db.calls.getByExternalId('acme', real.callSid, 'twilio')).toMatchObject({ status: 'active', endedAt: null });
    const during = await api(t, recordingPath(real.callSid));
    expect(during.status).toBe(409);
    expect(await during.json()).toMatchObject({ error: { code: 'CONFLICT', details: { status: 'in-progress' } } });

    real.media(3000, 4000, { inbound: 440, outbound: 1000 });
    real.stop();
    expect((await real.closed).code).toBe(1000);
    await completed(t, real.callSid, 2);
    const primary = (await recordingsOfCall(t, 'acme', real.callSid)).find((r) => r.metadata['streamSid'] === real.streamSid)!;
    expect(primary.durationMs).toBe(4000);
    expect(primary.metadata['primary']).toBeUndefined();
    expect(await t.gateway.db.calls.getByExternalId('acme', real.callSid, 'twilio')).toMatchObject({ status: 'ended' });

    // The call route serves the real 4 s recording, although the replay's is newer and completed first.
    const res = await api(t, recordingPath(real.callSid));
    expect(res.status).toBe(200);
    expect(res.headers.get('x-recording-sid')).toBe(primary.recordingSid);
    const wav = decodeWav(new Uint8Array(await res.arrayBuffer()));
    expect(wav.channelSamples[0]!.length).toBe(4 * 16000);
    expect(toneAmplitude(wav.channelSamples[0]!.subarray(1600, 62400), 16000, 440)).toBeGreaterThan(9000);
    expect(toneAmplitude(wav.channelSamples[1]!.subarray(1600, 62400), 16000, 1000)).toBeGreaterThan(9000);
    expect(toneAmplitude(wav.channelSamples[0]!.subarray(1600, 14400), 16000, 2000)).toBeLessThan(100);
  });

  test('a streamSid that already started on the call closes with 4411 STREAM_REPLAYED and records nothing', async () => {
    const acme = t.accounts[0]!;
    const real = await RawTwilioStream.open(t, acme);
    real.start();
    real.media(0, 500, { inbound: 440, outbound: 1000 });
    real.stop();
    await real.closed;
    await completed(t, real.callSid, 1);

    const again = await RawTwilioStream.open(t, acme, { callSid: real.callSid, streamSid: real.streamSid });
    again.start();
    again.media(0, 500, { inbound: 2000, outbound: 2000 });
    expect(await again.closed).toEqual({ code: 4411, reason: 'STREAM_REPLAYED' });
    expect(await recordingsOfCall(t, 'acme', real.callSid)).toHaveLength(1);
    expect(await t.gateway.db.calls.getByExternalId('acme', real.callSid, 'twilio')).toMatchObject({ status: 'ended' });
  });
});

describe('stream tokens', () => {
  const masterKey = () => strict.gateway.options.keyring.current;
  const tokenQuery = (callSid: string, expiresAtMs = Date.now() + 600_000, key = masterKey()) => `?token=${signStreamToken(key, callSid, expiresAtMs)}`;
  const refusal = (query?: string, org = 'acme') =>
    RawTwilioStream.open(strict, strict.accounts.find((a) => a.org === org)!, query === undefined ? {} : { query }).then(
      () => null,
      (err: { status: number; body: string }) => ({ status: err.status, code: (JSON.parse(err.body) as { error: { code: string } }).error.code }),
    );

  test.each([
    ['no token, for an organisation that requires one', () => undefined],
    ['an expired token', () => tokenQuery(randomCallSid(), Date.now() - 1000)],
    ['a token valid for longer than SIGNED_URL_MAX_LIFETIME_SECONDS (24 h)', () => tokenQuery(randomCallSid(), Date.now() + 25 * 3600_000)],
    ['a token signed with another key', () => tokenQuery(randomCallSid(), Date.now() + 600_000, randomBytes(32))],
    ['a malformed token', () => '?token=v1.nonsense'],
  ])('%s is refused at the upgrade with 403 STREAM_TOKEN_INVALID', async (_name, query) => {
    expect(await refusal(query())).toEqual({ status: 403, code: 'STREAM_TOKEN_INVALID' });
  });

  test('an organisation that does not require tokens streams without one', async () => {
    const globex = strict.accounts.find((a) => a.org === 'globex')!;
    const s = await RawTwilioStream.open(strict, globex);
    s.start();
    s.media(0, 500, { inbound: 440, outbound: 1000 });
    s.stop();
    expect((await s.closed).code).toBe(1000);
  });

  test('a token opens streams of its own call only: another CallSid in start closes with 4410', async () => {
    const acme = strict.accounts[0]!;
    const s = await RawTwilioStream.open(strict, acme, { query: tokenQuery(randomCallSid()) });
    s.start();
    s.media(0, 500, { inbound: 440, outbound: 1000 });
    expect(await s.closed).toEqual({ code: 4410, reason: 'STREAM_TOKEN_INVALID' });
    expect(await recordingsOfCall(strict, 'acme', s.callSid)).toHaveLength(0);
  });

  test('without signature validation the account is known only at start: a required token missing closes with 4410', async () => {
    const acme = unsigned.accounts[0]!;
    const bare = await RawTwilioStream.open(unsigned, acme, { signature: null });
    bare.start();
    expect(await bare.closed).toEqual({ code: 4410, reason: 'STREAM_TOKEN_INVALID' });
    expect(await recordingsOfCall(unsigned, 'acme', bare.callSid)).toHaveLength(0);

    const callSid = randomCallSid();
    const query = `?token=${signStreamToken(unsigned.gateway.options.keyring.current, callSid, Date.now() + 60_000)}`;
    const tokened = await RawTwilioStream.open(unsigned, acme, { signature: null, query, callSid });
    tokened.start();
    tokened.media(0, 500, { inbound: 440, outbound: 1000 });
    tokened.stop();
    expect((await tokened.closed).code).toBe(1000);
    await completed(unsigned, callSid, 1);
  });

  test.each([
    [['stream-url', '--public-url', PUBLIC_URL]],
    [['stream-url', '--call-sid', 'CA123', '--public-url', PUBLIC_URL]],
    [['stream-url', '--call-sid', `CA${'0'.repeat(32)}`, '--public-url', 'ftp://x']],
    [['stream-url', '--call-sid', `CA${'0'.repeat(32)}`, '--ttl', 'soon', '--public-url', PUBLIC_URL]],
  ])('`callvault %j` is a usage error (64)', async (argv) => {
    const io = { stdout: new PassThrough(), stderr: new PassThrough(), env: { MASTER_KEY: Buffer.alloc(32, 1).toString('base64') } };
    expect(await runCli(argv, io)).toBe(64);
  });

  test('`callvault stream-url` prints a stream URL for the call that the gateway records', async () => {
    const callSid = randomCallSid();
    const stdout = new PassThrough();
    let printed = '';
    stdout.on('data', (d: Buffer) => (printed += d.toString()));
    const code = await runCli(['stream-url', '--call-sid', callSid, '--ttl', '600', '--public-url', PUBLIC_URL], {
      stdout,
      stderr: new PassThrough(),
      env: { MASTER_KEY: Buffer.from(masterKey()).toString('base64') },
    });
    expect(code).toBe(0);
    const url = new URL(printed.trim());
    expect(`${url.protocol}//${url.host}${url.pathname}`).toBe('wss://rec.example.test/twilio/media');
    // The library helper gives the same URL shape.
    expect(new URL(twilioStreamUrl(PUBLIC_URL, callSid, { masterKey: masterKey() })).pathname).toBe(url.pathname);

    const s = await RawTwilioStream.open(strict, strict.accounts[0]!, { query: url.search, callSid });
    s.start();
    s.media(0, 1000, { inbound: 440, outbound: 1000 });
    s.stop();
    expect((await s.closed).code).toBe(1000);
    await completed(strict, callSid, 1);
    const res = await api(strict, recordingPath(callSid), { authorization: `Bearer ${apiKeyOf(strict, 'acme')}` });
    expect(res.status).toBe(200);
    const wav = decodeWav(new Uint8Array(await res.arrayBuffer()));
    expect(wav.channelSamples[0]!.length).toBe(16000);
    expect(toneAmplitude(wav.channelSamples[0]!.subarray(1600, 14400), 16000, 440)).toBeGreaterThan(9000);
  });
});
