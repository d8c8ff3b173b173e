/**
 * Admission control: sockets that never start, the per-account stream limit, and the spool's free-space
 * reserve (through the injectable probe). Streams already admitted always finish their recordings whole.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';

let t: TestGateway | undefined;
afterEach(async () => {
  await t?.dispose();
  t = undefined;
});

async function completed(gw: TestGateway, s: RawTwilioStream) {
  await expect.poll(async () => (await recordingsOfCall(gw, 'acme', s.callSid)).map((r) => r.status)).toEqual(['completed']);
  const [row] = await recordingsOfCall(gw, 'acme', s.callSid);
  return fetchRecording(gw, row!);
}

function refusal(p: Promise<unknown>): Promise<number | undefined> {
  return p.then(
    () => undefined,
    (err: { status?: number }) => err.status,
  );
}

describe('admission', () => {
  test('a signed stream that sends no start is closed with 4407 after the configured timeout', async () => {
    t = await startTestGateway({ admission: { streamStartTimeoutMs: 300 } });
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    expect(await s.closed).toEqual({ code: 4407, reason: 'STREAM_START_TIMEOUT' });
    expect(t.logs.find('twilio stream sent no start')[0]).toMatchObject({ code: 'STREAM_START_TIMEOUT', closeCode: 4407 });
  });

  test('streams over MAX_STREAMS_PER_ACCOUNT are refused with 429 while the admitted one records whole', async () => {
    t = await startTestGateway({ admission: { maxStreamsPerAccount: 1 } });
    const [acme, globex] = t.accounts;
    const first = await RawTwilioStream.open(t, acme!);
    first.start();
    first.media(0, 1000, { inbound: 440, outbound: 1000 });
    await first.flushed(t, 'acme', 1000);
    expect(await refusal(RawTwilioStream.open(t, acme!))).toBe(429);
    // Another account has its own limit.
    const other = await RawTwilioStream.open(t, globex!);
    other.ws.close(1000);
    first.media(1000, 2000, { inbound: 440, outbound: 1000 });
    first.stop();
    expect((await first.closed).code).toBe(1000);
    const rec = await completed(t, first);
    expect(rec.row.durationMs).toBe(2000);
    expect(rec.channelSamples[0]!.length).toBe(2 * rec.sampleRate);
    // The slot is free again once the stream closed.
    const again = await RawTwilioStream.open(t, acme!);
    again.ws.close(1000);
  });

  test('a full spool refuses new streams (507) and makes /readyz unready; the running call completes; space back: accepted', async () => {
    let free = 10 * 1024 * 1024 * 1024;
    t = await startTestGateway({ admission: { spoolMinFreeBytes: 512 * 1024 * 1024, spoolProbeIntervalMs: 20, freeSpaceProbe: async () => free } });
    const gw = t;
    const acme = gw.accounts[0]!;
    const running = await RawTwilioStream.open(gw, acme);
    running.start();
    running.media(0, 1000, { inbound: 440, outbound: 1000 });
    await running.flushed(gw, 'acme', 1000);

    free = 100 * 1024 * 1024;
    await expect.poll(async () => (await fetch(`${gw.httpUrl}/readyz`)).status).toBe(503);
    const body = (await (await fetch(`${gw.httpUrl}/readyz`)).json()) as { checks: Record<string, boolean>; reasons: { code: string }[] };
    expect(body.checks['spool']).toBe(false);
    expect(body.reasons[0]!.code).toBe('SPOOL_FULL');
    expect(await refusal(RawTwilioStream.open(gw, acme))).toBe(507);
    expect((await gw.gateway.metrics.spoolFreeBytes.get()).values[0]!.value).toBe(free);
    const refused = (await gw.gateway.metrics.streamsRefused.get()).values.find((v) => v.labels['reason'] === 'SPOOL_FULL');
    expect(refused?.value).toBeGreaterThanOrEqual(1);

    running.media(1000, 3000, { inbound: 440, outbound: 1000 });
    running.stop();
    expect((await running.closed).code).toBe(1000);
    const rec = await completed(gw, running);
    expect(rec.row.durationMs).toBe(3000);
    expect(rec.channelSamples[0]!.length).toBe(3 * rec.sampleRate);

    free = 10 * 1024 * 1024 * 1024;
    await expect.poll(async () => (await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200);
    const next = await RawTwilioStream.open(gw, acme);
    next.start();
    next.media(0, 500, { inbound: 440, outbound: 1000 });
    next.stop();
    expect((await next.closed).code).toBe(1000);
    expect((await completed(gw, next)).row.durationMs).toBe(500);
  });
});
