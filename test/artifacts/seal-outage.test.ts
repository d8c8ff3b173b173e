/**
 * Sealing a call's artifacts while object storage is away (MinIO behind a proxy that refuses connections): a
 * late server-key POST is stored and served from staging, and sealed once S3 is back; a client-key call that
 * ends during the outage (its recording stopped and uploaded before) keeps its key in memory and seals when S3
 * returns (until then 409 ARTIFACTS_NOT_SEALED).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decryptObject, deriveClientDataKeyFor } from '../../dist/crypto/index.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { s3Peer } from '../support/peers.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { api, apiKeyOf, placeCall } from '../api/support.js';

let t: TestGateway;
let proxy: FaultProxy;

beforeAll(async () => {
  proxy = await FaultProxy.start(s3Peer().endpoint);
  t = await startTestGateway({
    retry: { initialDelayMs: 100, maxDelayMs: 500 },
    s3: { endpoint: proxy.endpoint, connectTimeoutMs: 1_000, requestTimeoutMs: 2_000 },
  });
});

afterAll(async () => {
  await proxy?.setMode('forward');
  await t?.dispose();
  await proxy?.close();
});

const entry = (text: string) => ({ timestamp: '2026-12-01T14:30:22.123456Z', channel: 'caller', type: 'input', text, confidence: null, duration_ms: null });

function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${t.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKeyOf(t, 'acme')}` },
    body: JSON.stringify(body),
  });
}

const callIdOf = async (callSid: string) => (await t.gateway.db.calls.getByExternalId('acme', callSid))!.id;

describe('object storage away when the artifacts are sealed', () => {
  test('server key: a POST after the call is stored (201) and served while S3 is away, and sealed once it is back', async () => {
    const placed = await placeCall(t);
    const id = await callIdOf(placed.callSid);
    await proxy.setMode('refuse');
    const res = await post(`/calls/${placed.callSid}/transcript`, { entries: [entry('Zanzibar while away')] });
    expect(res.status).toBe(201);
    const served = await (await api(t, `/calls/${placed.callSid}/transcript`)).json();
    expect(served.entries.map((e: { text: string }) => e.text)).toEqual(['Zanzibar while away']);
    await expect.poll(() => t.logs.find('could not seal the call artifacts, retrying').length, { timeout: 20_000 }).toBeGreaterThanOrEqual(1);
    expect(await t.gateway.db.artifacts.sealed(id)).toEqual([]);
    await proxy.setMode('forward');
    await expect.poll(async () => (await t.gateway.db.artifacts.sealed(id)).length, { timeout: 20_000 }).toBe(3);
    const after = await (await api(t, `/calls/${placed.callSid}/transcript`)).json();
    expect(after.entries.map((e: { text: string }) => e.text)).toEqual(['Zanzibar while away']);
  });

  test('client key: the call ends while S3 is away; 409 ARTIFACTS_NOT_SEALED until S3 is back, then the 302 object decrypts', async () => {
    const clientKey = randomBytes(32).toString('base64');
    const stream = await RawTwilioStream.open(t, t.accounts[0]!);
    stream.start({ recording: JSON.stringify({ enabled: true, key: clientKey }) });
    stream.media(0, 500, { inbound: 440, outbound: 1000 });
    await stream.flushed(t, 'acme', 500);
    expect((await post(`/calls/${stream.callSid}/transcript`, { entries: [entry('Kilimanjaro')] })).status).toBe(201);
    // The recording is stopped (and uploaded) first: the call carries on, with its key, and ends while S3 is away.
    await t.gateway.liveCall('acme', stream.callSid)!.stopRecording();
    await expect
      .poll(async () => (await t.gateway.db.recordings.list('acme', { callSid: stream.callSid, page: 0, limit: 10 })).rows[0]?.status, { timeout: 20_000 })
      .toBe('completed');
    await proxy.setMode('refuse');
    stream.stop();
    await stream.closed;
    await expect.poll(() => t.logs.find('could not seal the call artifacts yet, retrying').length, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
    const waiting = await api(t, `/calls/${stream.callSid}/transcript`);
    expect(waiting.status).toBe(409);
    expect((await waiting.json()).error.code).toBe('ARTIFACTS_NOT_SEALED');
    await proxy.setMode('forward');
    const id = await callIdOf(stream.callSid);
    await expect.poll(async () => (await t.gateway.db.artifacts.sealed(id)).length, { timeout: 30_000 }).toBe(3);
    const res = await api(t, `/calls/${stream.callSid}/transcript`);
    expect(res.status).toBe(302);
    const object = new Uint8Array(await (await fetch(res.headers.get('location')!)).arrayBuffer());
    const { plaintext } = await decryptObject(object, (h) => deriveClientDataKeyFor(clientKey, h));
    expect(JSON.parse(new TextDecoder().decode(plaintext)).entries.map((e: { text: string }) => e.text)).toEqual(['Kilimanjaro']);
  });
});
