/**
 * Hostile or broken input closes only the offending stream, with its documented close code and a
 * structured log line; what that stream sent before is kept, and every other call carries on untouched.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildMediaMessage, buildStartMessage, signStreamUrl, simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { rms, toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, testAccount, type TestAccount, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream, SIGNED_URL } from '../support/twilio.js';
let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway();
});
afterAll(async () => {
  await t?.dispose();
});

async function openRaw(account: TestAccount, opts: { signature?: string | null } = {}): Promise<RawTwilioStream> {
  return RawTwilioStream.open(t, account, opts);
}

/** start + `frames` × 20 ms of a 440 Hz caller and 1000 Hz agent, as Twilio sends them. */
function sendGoodStart(s: RawTwilioStream, _account: TestAccount, frames: number): number {
  s.start();
  s.media(0, frames * 20, { inbound: 440, outbound: 1000 });
  return s.nextSequenceNumber;
}

type Hostile = (s: RawTwilioStream, account: TestAccount, seq: number) => void;

const hostileCases: Array<[string, number, string, Hostile]> = [
  ['malformed JSON', 4400, 'FRAME_MALFORMED', (s) => s.send('{"event": "media", ')],
  ['an unknown event', 4401, 'FRAME_UNKNOWN_EVENT', (s) => s.send(JSON.stringify({ event: 'teleport', streamSid: s.streamSid }))],
  ['a second start', 4402, 'FRAME_OUT_OF_ORDER', (s, a, seq) => s.send(buildStartMessage({ sequenceNumber: seq, accountSid: a.accountSid, callSid: s.callSid, streamSid: s.streamSid, tracks: ['inbound'], customParameters: {} }))],
  ['bad base64', 4404, 'FRAME_PAYLOAD_INVALID', (s, _a, seq) => s.send(buildMediaMessage({ sequenceNumber: seq, streamSid: s.streamSid, track: 'inbound', chunk: 26, timestampMs: 500, payload: '@@@not*base64@@@' }))],
  ['a wrong payload size', 4404, 'FRAME_PAYLOAD_INVALID', (s, _a, seq) => s.send(buildMediaMessage({ sequenceNumber: seq, streamSid: s.streamSid, track: 'inbound', chunk: 26, timestampMs: 500, payload: new Uint8Array(159) }))],
  ['a binary frame', 4400, 'FRAME_MALFORMED', (s) => s.send(Buffer.from([1, 2, 3]), true)],
  ['a message over 64 KiB', 1009, 'FRAME_TOO_LARGE', (s) => s.send('x'.repeat(65 * 1024))],
];

describe('hostile input mid-call', () => {
  test.each(hostileCases)(
    '%s closes only that stream with %i (%s), keeps its 500 ms of audio, and other calls carry on',
    async (_name, closeCode, errorCode, hostile) => {
      const acme = t.accounts[0]!;
      // A healthy call streaming in real time alongside the hostile one.
      const healthy = simulateTwilioCall({
        url: t.wsUrl,
        signedUrl: SIGNED_URL,
        accountSid: acme.accountSid,
        authToken: acme.authToken,
        durationMs: 1200,
        realtime: true,
        inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
        outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
      });
      const s = await openRaw(acme);
      const seq = sendGoodStart(s, acme, 25);
      hostile(s, acme, seq);
      const closed = await s.closed;
      expect(closed.code).toBe(closeCode);
      await expect.poll(() => t.logs.find('twilio stream rejected').some((l) => l['code'] === errorCode && l['callSid'] === s.callSid)).toBe(true);

      // What the hostile stream sent before its bad frame is recorded, not lost.
      await expect.poll(async () => (await recordingsOfCall(t, 'acme', s.callSid))[0]?.status).toBe('completed');
      const [row] = await recordingsOfCall(t, 'acme', s.callSid);
      expect(row!.durationMs).toBe(500);
      const kept = await fetchRecording(t, row!);
      expect(toneAmplitude(kept.channelSamples[0]!.subarray(800, 7200), 16000, 440)).toBeGreaterThan(10000);

      const good = await healthy;
      expect(good.closeCode).toBe(1000);
      const [goodRow] = await recordingsOfCall(t, 'acme', good.callSid);
      expect(goodRow).toMatchObject({ status: 'completed', durationMs: 1200 });
      const rec = await fetchRecording(t, goodRow!);
      const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
      expect(toneAmplitude(left.subarray(1600, 17600), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.9);
      expect(toneAmplitude(right.subarray(1600, 17600), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
      expect(rms(left.subarray(0, 19200))).toBeGreaterThan(1000);
    },
  );

  test('media before start closes the stream with 4402 and records nothing', async () => {
    const acme = t.accounts[0]!;
    const s = await openRaw(acme);
    s.send(buildMediaMessage({ sequenceNumber: 1, streamSid: s.streamSid, track: 'inbound', chunk: 1, timestampMs: 0, payload: new Uint8Array(160) }));
    expect((await s.closed).code).toBe(4402);
    expect(await recordingsOfCall(t, 'acme', s.callSid)).toEqual([]);
  });

  test("a stream claiming another account's SID is closed with 4403", async () => {
    const [acme, globex] = t.accounts as [TestAccount, TestAccount];
    const s = await openRaw(acme);
    s.send(buildStartMessage({ sequenceNumber: 1, accountSid: globex.accountSid, callSid: s.callSid, streamSid: s.streamSid, tracks: ['inbound'], customParameters: {} }));
    expect((await s.closed).code).toBe(4403);
    expect(await recordingsOfCall(t, 'globex', s.callSid)).toEqual([]);
    expect(await recordingsOfCall(t, 'acme', s.callSid)).toEqual([]);
  });

  test('a stream that ends without stop is still finalised with everything it sent', async () => {
    const acme = t.accounts[0]!;
    const s = await openRaw(acme);
    sendGoodStart(s, acme, 50);
    await new Promise<void>((resolve) => s.ws.once('pong', () => resolve()).ping());
    s.ws.terminate();
    await expect.poll(async () => (await recordingsOfCall(t, 'acme', s.callSid))[0]?.status).toBe('completed');
    expect((await recordingsOfCall(t, 'acme', s.callSid))[0]!.durationMs).toBe(1000);
  });
});

describe('stream signatures', () => {
  test.each([
    ['no signature', null],
    ['a signature by an unknown token', signStreamUrl('0'.repeat(32), SIGNED_URL)],
    ['a signature for another path', signStreamUrl('x', `${SIGNED_URL}?tenant=other`)],
  ])('an upgrade with %s is refused with 403 before any audio', async (_name, signature) => {
    await expect(openRaw(t.accounts[0]!, { signature })).rejects.toMatchObject({ status: 403 });
  });

  test('the same token signing another URL (query added) is refused', async () => {
    const acme = t.accounts[0]!;
    await expect(openRaw(acme, { signature: signStreamUrl(acme.authToken, `${SIGNED_URL}?x=1`) })).rejects.toMatchObject({ status: 403 });
  });

  test("a stream belongs to the organisation of the account that signed it", async () => {
    const globex = t.accounts[1]!;
    const result = await simulateTwilioCall({ url: t.wsUrl, signedUrl: SIGNED_URL, accountSid: globex.accountSid, authToken: globex.authToken, durationMs: 200 });
    expect(result.closeCode).toBe(1000);
    expect(await recordingsOfCall(t, 'globex', result.callSid)).toHaveLength(1);
    expect(await recordingsOfCall(t, 'acme', result.callSid)).toEqual([]);
  });
});

describe('wall-clock bound', () => {
  test('a stream more than 10 s ahead of the clock is closed with 4405 and the first 10 s are kept', async () => {
    // A frozen clock: no wall time passes, so only 10 s of media may arrive.
    const frozen = 1_700_000_000_000;
    const local = await startTestGateway({ now: () => frozen });
    try {
      const acme = local.accounts[0]!;
      const result = await simulateTwilioCall({
        url: local.wsUrl,
        signedUrl: SIGNED_URL,
        accountSid: acme.accountSid,
        authToken: acme.authToken,
        durationMs: 12_000,
      });
      expect(result.closeCode).toBe(4405);
      await expect.poll(async () => (await recordingsOfCall(local, 'acme', result.callSid))[0]?.status).toBe('completed');
      expect((await recordingsOfCall(local, 'acme', result.callSid))[0]!.durationMs).toBe(10_000);
    } finally {
      await local.dispose();
    }
  });

  test('faster than real time within the bound is normal and recorded exactly', async () => {
    const acme = t.accounts[0]!;
    const result = await simulateTwilioCall({ url: t.wsUrl, signedUrl: SIGNED_URL, accountSid: acme.accountSid, authToken: acme.authToken, durationMs: 8000 });
    expect(result.closeCode).toBe(1000);
    expect((await recordingsOfCall(t, 'acme', result.callSid))[0]).toMatchObject({ status: 'completed', durationMs: 8000 });
  });
});

describe('signature checking switched off explicitly', () => {
  test('an unsigned stream is accepted for a configured account and refused for an unknown one', async () => {
    const accounts = [testAccount('acme')];
    const local = await startTestGateway({ accounts, twilio: { accounts, validateSignatures: false, maxAheadOfClockMs: 10_000 } });
    try {
      const acme = local.accounts[0]!;
      const unsigned = await RawTwilioStream.open(local, acme, { signature: null });
      unsigned.start();
      unsigned.media(0, 200, { inbound: 440, outbound: 1000 });
      unsigned.stop();
      expect((await unsigned.closed).code).toBe(1000);
      expect(await recordingsOfCall(local, 'acme', unsigned.callSid)).toEqual([expect.objectContaining({ status: 'completed', durationMs: 200 })]);

      const stranger = { org: 'nobody', accountSid: `AC${'f'.repeat(32)}`, authToken: 'x' };
      const unknown = await RawTwilioStream.open(local, stranger, { signature: null });
      unknown.start();
      expect((await unknown.closed).code).toBe(4403);
    } finally {
      await local.dispose();
    }
  });
});
