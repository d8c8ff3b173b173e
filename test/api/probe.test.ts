/**
 * What a hostile-input probe found, each answered as documented: NUL bytes in ids and filters, unmatched routes,
 * impossible dates, absurd ranges, the Twilio webhook telling configured accounts from unknown ones, the
 * ElevenLabs webhook reading 32 MiB before checking anything, and client-key fragments in parse-error logs.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomCallSid } from '../../dist/ingest/twilio/index.js';
import { startTestGateway, recordingsOfCall, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { completedParams, elevenLabsSignature, postRecordingCallback } from '../manage/support.js';
import { apiKeyOf, placeCall, recordingPath } from './support.js';

const ELEVENLABS_SECRET = 'wsec_probe_secret_for_acme';
/** A client key whose fragments must never reach a log line. */
const CLIENT_KEY = 'Q2xpZW50S2V5RnJhZ21lbnRNdXN0TmV2ZXJMZWFr';

let t: TestGateway;
beforeAll(async () => {
  t = await startTestGateway({ elevenlabs: { webhookSecrets: [{ org: 'acme', secret: ELEVENLABS_SECRET }] } });
});
afterAll(async () => {
  await t?.dispose();
});

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request (fetch would normalise the path); resolves with the response even if the body was never sent. */
function raw(method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer, opts: { endBody?: boolean } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.httpUrl}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (err) => (opts.endBody === false ? undefined : reject(err)));
    if (opts.endBody === false) {
      // Headers (and perhaps a first few bytes) only: the rest of the declared body never comes.
      req.flushHeaders();
      if (body !== undefined) req.write(body);
    } else req.end(body);
  });
}

const auth = () => ({ authorization: `Bearer ${apiKeyOf(t, 'acme')}` });
const jsonOf = (res: RawResponse) => JSON.parse(res.body) as { error: { code: string; message: string } };

describe('ids and filters', () => {
  test.each([
    ['GET', '/calls/%00/recording'],
    ['DELETE', '/calls/CA%00x/recording'],
    ['GET', '/api/call-recordings?callSid=%00'],
    ['GET', '/api/call-recordings?source=%00'],
    ['GET', '/api/call-recordings/%00'],
    ['GET', '/api/call-recordings/%00/media'],
    ['PUT', '/api/agents/a%00b'],
  ])('a NUL byte: %s %s answers 400 BAD_REQUEST, not 500', async (method, path) => {
    const res = await raw(method, path, auth());
    expect(res.status).toBe(400);
    expect(jsonOf(res).error.code).toBe('BAD_REQUEST');
  });

  test('a NUL byte inside a JSON body never reaches PostgreSQL as a 500', async () => {
    const res = await raw('POST', '/api/call-recordings/stop', { ...auth(), 'content-type': 'application/json' }, JSON.stringify({ callSid: 'CA\u0000' }));
    expect([400, 404]).toContain(res.status);
    expect(t.logs.find('request failed')).toHaveLength(0);
  });

  test('a NUL byte in a signed webhook payload that reaches PostgreSQL answers 400, not 500', async () => {
    const body = JSON.stringify({ type: 'post_call_audio', data: { agent_id: 'agent-1', conversation_id: 'conv\u0000x', full_audio: Buffer.from('ID3').toString('base64') } });
    const now = Math.floor(Date.now() / 1000);
    const res = await raw('POST', '/webhooks/elevenlabs-post-call', { 'content-type': 'application/json', 'elevenlabs-signature': elevenLabsSignature(body, ELEVENLABS_SECRET, now) }, body);
    expect(res.status).toBe(400);
    expect(jsonOf(res).error).toMatchObject({ code: 'BAD_REQUEST', message: 'value rejected by the database' });
    expect(t.logs.find('request failed')).toHaveLength(0);
  });

  test.each([
    ['GET', '/no/such/route'],
    ['POST', '/calls'],
    ['PUT', '/calls/CA1/recording'],
    ['PATCH', '/healthz'],
    ['DELETE', '/'],
  ])('an unmatched route %s %s answers a JSON 404 NOT_FOUND', async (method, path) => {
    const res = await raw(method, path, auth());
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/json');
    expect(jsonOf(res).error.code).toBe('NOT_FOUND');
  });

  test.each([
    ['fromDate', '2026-02-30'],
    ['fromDate', '2025-02-29T10:00:00Z'],
    ['toDate', '2026-13-01'],
    ['toDate', '2026-04-31'],
    ['fromDate', '2026-01-01T24:00:00Z'],
  ])('%s=%s (a day that does not exist) answers 400', async (name, value) => {
    const res = await raw('GET', `/api/call-recordings?${name}=${encodeURIComponent(value)}`, auth());
    expect(res.status).toBe(400);
    expect(jsonOf(res).error.code).toBe('BAD_REQUEST');
  });

  test.each([['2024-02-29'], ['2026-12-31T23:59:59Z']])('fromDate=%s (a real day) is accepted', async (value) => {
    expect((await raw('GET', `/api/call-recordings?fromDate=${encodeURIComponent(value)}`, auth())).status).toBe(200);
  });
});

describe('byte ranges beyond any number', () => {
  // One 1 s stereo call at 16 kHz: a 64,044-byte WAV. Placed once, by the first case that needs it.
  const size = 44 + 16000 * 2 * 2;
  let placed: Promise<string> | undefined;
  const recordedCall = (): Promise<string> =>
    (placed ??= (async () => {
      const { callSid } = await placeCall(t, { durationMs: 1000 });
      await expect.poll(async () => (await recordingsOfCall(t, 'acme', callSid))[0]?.status, { timeout: 20_000 }).toBe('completed');
      return callSid;
    })());

  test.each([
    ['bytes=0-99999999999999999999', 206, () => `bytes 0-${size - 1}/${size}`],
    ['bytes=10-99999999999999999999', 206, () => `bytes 10-${size - 1}/${size}`],
    ['bytes=-99999999999999999999', 206, () => `bytes 0-${size - 1}/${size}`],
    ['bytes=99999999999999999999-', 416, () => `bytes */${size}`],
    ['bytes=99999999999999999999-99999999999999999999', 416, () => `bytes */${size}`],
  ])('Range: %s answers %i, never a 200', async (range, status, contentRange) => {
    const res = await raw('GET', recordingPath(await recordedCall()), { ...auth(), range });
    expect(res.status).toBe(status);
    expect(res.headers['content-range']).toBe(contentRange());
    if (status === 206) expect(Buffer.byteLength(res.body, 'latin1')).toBeGreaterThan(0);
  });
});

describe('Twilio recording webhook', () => {
  test('an unknown AccountSid is answered exactly like a configured one with a bad signature', async () => {
    const acme = t.accounts[0]!;
    const params = completedParams(acme, { sid: `RE${'a'.repeat(32)}`, callSid: randomCallSid() });
    const badSignature = await postRecordingCallback(t, acme, params, { signature: 'bm9wZQ==' });
    const unknown = await postRecordingCallback(t, acme, { ...params, AccountSid: `AC${'f'.repeat(32)}` }, { signature: 'bm9wZQ==' });
    const unsigned = await postRecordingCallback(t, acme, { ...params, AccountSid: `AC${'e'.repeat(32)}` }, { signature: null });
    const bodies = await Promise.all([badSignature, unknown, unsigned].map(async (r) => ({ status: r.status, body: await r.text() })));
    expect(bodies[0]).toEqual({ status: 403, body: JSON.stringify({ error: { code: 'SIGNATURE_INVALID', message: 'the request signature does not match a configured account' } }) });
    expect(bodies[1]).toEqual(bodies[0]);
    expect(bodies[2]).toEqual(bodies[0]);
  });
});

describe('ElevenLabs webhook: the signature header is checked before the body is read', () => {
  const DECLARED = 31 * 1024 * 1024;
  const hex = 'ab'.repeat(32);
  test.each([
    ['no signature header', null],
    ['a junk header', 'junk'],
    ['no v0', `t=${Math.floor(Date.now() / 1000)}`],
    ['a v0 that is not 64 hex digits', `t=${Math.floor(Date.now() / 1000)},v0=abc`],
    ['a timestamp an hour old', `t=${Math.floor(Date.now() / 1000) - 3600},v0=${hex}`],
    ['a timestamp an hour ahead', `t=${Math.floor(Date.now() / 1000) + 3600},v0=${hex}`],
  ])('%s: 401 SIGNATURE_INVALID while the declared 31 MiB body is still unsent', async (_name, signature) => {
    const res = await raw(
      'POST',
      '/webhooks/elevenlabs-post-call',
      { 'content-type': 'application/json', 'content-length': String(DECLARED), ...(signature === null ? {} : { 'elevenlabs-signature': signature }) },
      '{"type":"post_call_audio",',
      { endBody: false },
    );
    expect(res.status).toBe(401);
    expect(jsonOf(res).error.code).toBe('SIGNATURE_INVALID');
  });

  test('deliveries beyond 8 being read at once answer 503 with Retry-After unread; a client that goes away frees its slot', async () => {
    const header = () => `t=${Math.floor(Date.now() / 1000)},v0=${hex}`;
    // Eight well-formed deliveries that declare 31 MiB and send only their first bytes: each holds a slot.
    const held = Array.from({ length: 8 }, () => {
      const req = request(`${t.httpUrl}/webhooks/elevenlabs-post-call`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(DECLARED), 'elevenlabs-signature': header() },
      });
      req.on('error', () => undefined);
      req.flushHeaders();
      req.write('{"type":"post_call_audio",');
      return req;
    });
    const busy = async () =>
      raw('POST', '/webhooks/elevenlabs-post-call', { 'content-type': 'application/json', 'content-length': String(DECLARED), 'elevenlabs-signature': header() }, '{', { endBody: false });
    await expect.poll(async () => (await busy()).status).toBe(503);
    const refusedBusy = await busy();
    expect(refusedBusy.headers['retry-after']).toBe('5');
    expect(jsonOf(refusedBusy).error.code).toBe('OVERLOADED');
    // The eight senders give up: their slots are freed, and the next delivery is read (and refused on its signature).
    for (const req of held) req.destroy();
    await expect
      .poll(async () => (await raw('POST', '/webhooks/elevenlabs-post-call', { 'content-type': 'application/json', 'elevenlabs-signature': header() }, '{}')).status)
      .toBe(401);
  });

  test('a flood of refused deliveries is logged once, then at most once per 10 s', async () => {
    const before = t.logs.find('elevenlabs webhook refused').length;
    for (let i = 0; i < 40; i++) {
      const res = await raw('POST', '/webhooks/elevenlabs-post-call', { 'content-type': 'application/json', 'elevenlabs-signature': 'junk' }, '{}');
      expect(res.status).toBe(401);
    }
    expect(t.logs.find('elevenlabs webhook refused').length - before).toBeLessThanOrEqual(1);
  });
});

describe('client keys never reach the log', () => {
  const leaked = () => JSON.stringify(t.logs.lines).includes(CLIENT_KEY.slice(4, 13));

  test('a malformed `recording` custom parameter closes with 4406 and its text is not logged', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ recording: `{"enabled":true,"key":"${CLIENT_KEY}"x}` });
    expect(await s.closed).toEqual({ code: 4406, reason: 'RECORDING_OPTIONS_INVALID' });
    await expect.poll(() => t.logs.find('twilio stream rejected').some((l) => l['callSid'] === s.callSid)).toBe(true);
    expect(leaked()).toBe(false);
  });

  test('a start frame that is not JSON closes with 4400 and its text is not logged', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.send(`{"event":"start","start":{"customParameters":{"recording":"{\\"key\\":\\"${CLIENT_KEY}\\"}"}} x`);
    expect((await s.closed).code).toBe(4400);
    await expect.poll(() => t.logs.find('twilio stream rejected').length).toBeGreaterThan(0);
    expect(leaked()).toBe(false);
  });

  test('a start-recording body that is not JSON answers 400 and its text is not logged', async () => {
    const res = await raw('POST', '/api/call-recordings/start', { ...auth(), 'content-type': 'application/json' }, `{"callSid":"${randomCallSid()}","key":"${CLIENT_KEY}" x}`);
    expect(res.status).toBe(400);
    expect(res.body).not.toContain(CLIENT_KEY.slice(4, 13));
    expect(leaked()).toBe(false);
  });
});
