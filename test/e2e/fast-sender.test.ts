/**
 * A sender faster than the pipeline is slowed down, not cut off: a 10-minute call replayed as fast as the
 * socket takes it (within the ahead-of-clock bound) is recorded whole. Beyond 30 s of audio waiting, frames
 * are kept only in the journal on disk and the pipeline catches up from there, so memory stays bounded.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { sliceMs, toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { placeCall } from '../support/twilio.js';

const CALL_MS = 10 * 60_000;
let t: TestGateway;

beforeAll(async () => {
  const accounts = [testAccount('acme')];
  t = await startTestGateway({
    accounts,
    twilio: { accounts, validateSignatures: true, maxAheadOfClockMs: CALL_MS + 60_000 },
    // 2 s of audio in memory (the default is 30 s): the pipeline may nearly keep up with one sender, and the
    // switch to the journal is what this test is about, so it must happen whatever the machine.
    batcherLimits: { maxPendingMediaMs: 2_000, maxJournalBacklogBytes: 256 * 1024 * 1024 },
  });
});
afterAll(async () => {
  await t?.dispose();
});

test('a 10-minute call sent as fast as possible is recorded whole, catching up from the journal', async () => {
  const result = await placeCall(t, { durationMs: CALL_MS, closeTimeoutMs: 120_000 });
  expect(result.closeCode).toBe(1000);
  expect(t.logs.find('stream ahead of the pipeline, catching up from the journal').length).toBeGreaterThan(0);
  const [row] = await recordingsOfCall(t, 'acme', result.callSid);
  expect(row).toMatchObject({ status: 'completed', durationMs: CALL_MS });
  const [left, right] = (await fetchRecording(t, row!)).channelSamples as [Int16Array, Int16Array];
  expect(left.length).toBe((CALL_MS / 1000) * 16000);
  // The tones run through the whole call, across the switch to the journal and back.
  for (const atMs of [1_000, 29_000, 31_000, 60_000, 300_000, 598_000]) {
    expect(toneAmplitude(sliceMs(left, 16000, atMs, atMs + 500), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.9);
    expect(toneAmplitude(sliceMs(right, 16000, atMs, atMs + 500), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
  }
});
