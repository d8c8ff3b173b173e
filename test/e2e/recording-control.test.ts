/**
 * Recording control mid-call at the gateway level: start from now (never retroactively), pause with
 * silence or skip, resume, stop and start again. The stream is driven frame by frame, so every control
 * action lands at an exact point of the media timeline; each period carries its own tone, so the test
 * can tell from the audio which period reached storage.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { rms, sliceMs, toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';

const RATE = 16000;
let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway({ recording: { sampleRate: RATE, defaults: { enabled: true, stereo: true } } });
});
afterAll(async () => {
  await t?.dispose();
});

/** Tone level (int16 amplitude) at each frequency over [fromMs, toMs) of a channel. */
function tones(samples: Int16Array, fromMs: number, toMs: number, freqs: number[]): number[] {
  return freqs.map((f) => toneAmplitude(sliceMs(samples, RATE, fromMs, toMs), RATE, f));
}

async function completedRecordings(callSid: string, count: number) {
  await expect.poll(async () => (await recordingsOfCall(t, 'acme', callSid)).filter((r) => r.status === 'completed').length).toBe(count);
  return (await recordingsOfCall(t, 'acme', callSid)).reverse();
}

describe('mid-call control', () => {
  test('a recording started mid-call holds only what follows the start', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ recording: JSON.stringify({ enabled: false }) });
    s.media(0, 1000, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 1000);
    const call = t.gateway.liveCall('acme', s.callSid)!;
    await call.startRecording({ enabled: true, stereo: true }, {});
    s.media(1000, 2000, { inbound: 880, outbound: 880 });
    s.stop();
    expect((await s.closed).code).toBe(1000);
    const [row] = await completedRecordings(s.callSid, 1);
    expect(row!.durationMs).toBe(1000);
    const rec = await fetchRecording(t, row!);
    const [left] = rec.channelSamples as [Int16Array];
    const [before, after] = tones(left, 50, 950, [440, 880]);
    expect(after).toBeGreaterThan(10000);
    expect(before).toBeLessThan(10);
  });

  test.each([
    ['silence', 3000, [[0, 1000, 440], [1000, 2000, 0], [2000, 3000, 880]]],
    ['skip', 2000, [[0, 1000, 440], [1000, 2000, 880]]],
  ] as const)('pause with %s: nothing from the paused span is stored', async (behavior, durationMs, periods) => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 1000, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 1000);
    const call = t.gateway.liveCall('acme', s.callSid)!;
    call.pauseRecording(behavior);
    // A card number being read out.
    s.media(1000, 2000, { inbound: 660, outbound: 660 });
    await s.flushed(t, 'acme', 2000);
    call.resumeRecording();
    s.media(2000, 3000, { inbound: 880, outbound: 880 });
    s.stop();
    await s.closed;
    const [row] = await completedRecordings(s.callSid, 1);
    expect(row!.durationMs).toBe(durationMs);
    expect(row!.metadata['pauses']).toEqual([
      expect.objectContaining({ behavior, fromMediaMs: 1000, toMediaMs: 2000, resumedAt: expect.any(String) }),
    ]);
    const rec = await fetchRecording(t, row!);
    for (const channel of rec.channelSamples) {
      // The paused tone is nowhere in the recording: one stored second of it would measure about 4000 here;
      // what remains is leakage from the other tones' edges (below -60 dB).
      expect(toneAmplitude(channel, RATE, 660)).toBeLessThan(30);
      for (const [from, to, hz] of periods) {
        if (hz === 0) expect(rms(sliceMs(channel, RATE, from + 5, to - 5))).toBe(0);
        else expect(tones(channel, from + 20, to - 20, [hz])[0]).toBeGreaterThan(10000);
      }
    }
  });

  test('pauses cut by media position: a lagging track keeps its pre-pause audio and loses its paused audio', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    // The agent's track lags the caller's by 200 ms when the pause lands at 1000 ms.
    s.media(0, 1000, { inbound: 440, outbound: 0 });
    s.media(0, 800, { inbound: 0, outbound: 440 });
    await s.flushed(t, 'acme', 1000);
    const call = t.gateway.liveCall('acme', s.callSid)!;
    call.pauseRecording('silence');
    s.media(800, 1000, { inbound: 0, outbound: 440 }); // from before the pause, arriving during it: kept
    s.media(1000, 2000, { inbound: 660, outbound: 0 });
    await s.flushed(t, 'acme', 2000);
    call.resumeRecording();
    s.media(1000, 2000, { inbound: 0, outbound: 660 }); // from inside the pause, arriving after it: dropped
    s.media(2000, 3000, { inbound: 880, outbound: 880 });
    s.stop();
    await s.closed;
    const [row] = await completedRecordings(s.callSid, 1);
    const rec = await fetchRecording(t, row!);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(tones(right, 820, 980, [440])[0]).toBeGreaterThan(10000);
    for (const channel of [left, right]) {
      expect(rms(sliceMs(channel, RATE, 1005, 1995))).toBe(0);
      expect(toneAmplitude(channel, RATE, 660)).toBeLessThan(30);
      expect(tones(channel, 2020, 2980, [880])[0]).toBeGreaterThan(10000);
    }
  });

  test('a call that ends while paused (silence) keeps the silence up to the end', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 1000, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 1000);
    t.gateway.liveCall('acme', s.callSid)!.pauseRecording('silence');
    s.media(1000, 1500, { inbound: 660, outbound: 660 });
    s.stop();
    await s.closed;
    const [row] = await completedRecordings(s.callSid, 1);
    expect(row!.durationMs).toBe(1500);
    const rec = await fetchRecording(t, row!);
    expect(rms(sliceMs(rec.channelSamples[0]!, RATE, 1005, 1500))).toBe(0);
  });

  test('stop, then start again: two recordings of one call, each with its own span', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 1000, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 1000);
    const call = t.gateway.liveCall('acme', s.callSid)!;
    const first = await call.stopRecording();
    expect(first).toMatchObject({ status: 'completed', durationMs: 1000 });
    s.media(1000, 1500, { inbound: 660, outbound: 660 });
    await s.flushed(t, 'acme', 1500);
    await expect(call.startRecording({ enabled: true }, {})).resolves.toBeDefined();
    await expect(call.startRecording({ enabled: true }, {})).rejects.toMatchObject({ code: 'CONFLICT' });
    s.media(1500, 2500, { inbound: 880, outbound: 880 });
    s.stop();
    await s.closed;
    const rows = await completedRecordings(s.callSid, 2);
    expect(rows.map((r) => r.durationMs)).toEqual([1000, 1000]);
    const second = await fetchRecording(t, rows[1]!);
    expect(tones(second.channelSamples[0]!, 20, 980, [880, 660, 440])).toEqual([
      expect.toSatisfy((v: number) => v > 10000),
      expect.toSatisfy((v: number) => v < 10),
      expect.toSatisfy((v: number) => v < 10),
    ]);
  });

  test('recording only the inbound track leaves the agent channel silent', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ recording: JSON.stringify({ enabled: false }) });
    await s.flushed(t, 'acme', 0);
    await t.gateway.liveCall('acme', s.callSid)!.startRecording({ enabled: true, stereo: true }, {}, { tracks: ['inbound'] });
    s.media(0, 1000, { inbound: 440, outbound: 1000 });
    s.stop();
    await s.closed;
    const [row] = await completedRecordings(s.callSid, 1);
    const rec = await fetchRecording(t, row!);
    expect(tones(rec.channelSamples[0]!, 20, 980, [440])[0]).toBeGreaterThan(10000);
    expect(rms(rec.channelSamples[1]!)).toBe(0);
  });
});

describe('lifecycles', () => {
  test('close() is idempotent and destroy() after it changes nothing', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 500, { inbound: 440, outbound: 1000 });
    await s.flushed(t, 'acme', 500);
    const call = t.gateway.liveCall('acme', s.callSid)!;
    const first = call.close();
    const second = call.close();
    expect(second).toBe(first);
    const summary = await first;
    expect(summary).toMatchObject({ status: 'completed', durationMs: 500 });
    call.destroy();
    call.destroy();
    const [row] = await recordingsOfCall(t, 'acme', s.callSid);
    expect(row).toMatchObject({ status: 'completed', durationMs: 500 });
    expect(t.gateway.liveCall('acme', s.callSid)).toBeUndefined();
    expect((await s.closed).code).toBe(1000);
  });

  test('destroy() aborts: the recording fails with the error code, the upload is aborted, the spool stays', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 500, { inbound: 440, outbound: 1000 });
    await s.flushed(t, 'acme', 500);
    const call = t.gateway.liveCall('acme', s.callSid)!;
    const recording = call.recording!;
    call.destroy();
    call.destroy();
    expect(recording.state).toBe('destroyed');
    expect(recording.signal.aborted).toBe(true);
    expect(call.signal.aborted).toBe(true);
    await expect.poll(async () => (await recordingsOfCall(t, 'acme', s.callSid))[0]?.status).toBe('failed');
    expect((await recordingsOfCall(t, 'acme', s.callSid))[0]!.errorCode).toBe('DESTROYED');
    expect((await s.closed).code).toBe(1011);
  });
});
