/**
 * Every lifecycle object finishes with close() and aborts with destroy(err); both are idempotent, in any
 * order, and `closed` is emitted exactly once. Track alone; Call and Gateway on a real gateway.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CallvaultError } from '../../dist/errors/index.js';
import { Track } from '../../dist/gateway/track.js';
import { randomCallSid } from '../../dist/ingest/twilio/index.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

type Step = 'close' | 'destroy';
const SEQUENCES: Step[][] = [
  ['close', 'close'],
  ['destroy', 'destroy'],
  ['close', 'destroy'],
  ['destroy', 'close'],
];
const failure = (): CallvaultError => new CallvaultError('INTERNAL', 'aborted by the test');

/** Counts `closed` events of an emitter. */
function closedCount(emitter: { on(event: 'closed', listener: (...args: never[]) => void): unknown }): () => number {
  let count = 0;
  emitter.on('closed', () => count++);
  return () => count;
}

describe('Track', () => {
  test.each(SEQUENCES)('%s then %s: closed once, no frame accepted after', (first, second) => {
    const track = new Track({ id: 'inbound', role: 'caller', encoding: 'mulaw', sampleRate: 8000 });
    const closed = closedCount(track);
    expect(track.accept(160)).toBe(true);
    for (const step of [first, second]) (step === 'close' ? track.close() : track.destroy(failure()));
    expect(closed()).toBe(1);
    expect(track.accept(160)).toBe(false);
    expect(track.framesReceived).toBe(1);
    // The first step decides how the track ended.
    expect(track.failure?.code ?? null).toBe(first === 'destroy' ? 'INTERNAL' : null);
  });
});

describe('Call', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway();
  });
  afterAll(async () => {
    await t?.dispose();
  });

  test.each(SEQUENCES)('%s then %s: closed once, the recording settled, the call row ended', async (first, second) => {
    const callSid = randomCallSid();
    const call = await t.gateway.openCall({ orgId: 'acme', source: 'twilio', externalId: callSid, metadata: {}, startedAt: new Date() });
    const track = call.addTrack({ id: 'inbound', role: 'caller', encoding: 'mulaw', sampleRate: 8000 });
    const recording = await call.startRecording({ ...t.gateway.options.recording.defaults, enabled: true }, {});
    const closed = closedCount(call);
    const trackClosed = closedCount(track);
    const run = (step: Step) => (step === 'close' ? call.close() : (call.destroy(failure()), Promise.resolve(null)));
    // The second step arrives while the first is still under way.
    const [a, b] = [run(first), run(second)];
    await Promise.all([a, b]);
    await recording.settled;
    await expect.poll(() => closed()).toBe(1);
    expect(trackClosed()).toBe(1);
    expect(call.closed).toBe(true);
    const row = await t.gateway.db.recordings.get('acme', recording.id);
    // close() first finishes the recording (a second destroy() arrives after it began and may abort the
    // upload it is waiting for); destroy() first fails it with the error code.
    if (first === 'destroy') expect(row).toMatchObject({ status: 'failed', errorCode: 'INTERNAL' });
    else if (second === 'close') expect(row).toMatchObject({ status: 'completed' });
    else expect(['completed', 'failed']).toContain(row?.status);
    await expect.poll(async () => (await t.gateway.db.calls.getByExternalId('acme', callSid, 'twilio'))?.status).toBe('ended');
    expect(t.gateway.liveCall('acme', callSid)).toBeUndefined();
  });
});

describe('Gateway', () => {
  test.each(SEQUENCES)('%s then %s: closed once, both resolve, resources released once', async (first, second) => {
    const t = await startTestGateway();
    try {
      const closed = closedCount(t.gateway);
      const run = (step: Step) => (step === 'close' ? t.gateway.close() : (t.gateway.destroy(failure()), Promise.resolve()));
      await Promise.all([run(first), run(second)]);
      expect(closed()).toBe(1);
      expect(t.gateway.state).toBe('closed');
      expect(t.logs.find('gateway resources did not close cleanly')).toEqual([]);
      await expect(fetch(`${t.httpUrl}/healthz`)).rejects.toThrow();
    } finally {
      await t.dispose();
    }
  });
});
