/**
 * A worker thread that dies mid-call costs each affected call at most the batch it had in flight: the pool
 * replaces the thread, the call's timeline keeps its length (the lost span is exact-length silence, kept
 * in the recording's metadata as a gap with its reason), and every other call is untouched.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { rms, sliceMs, toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { placeCall } from '../support/twilio.js';
import { api } from '../api/support.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startTestGateway({ workerThreads: 1 });
});
afterAll(async () => {
  await t?.dispose();
});

const TONE = 0.4 * 32767;

test('a worker terminated mid-call loses one batch of one call as a recorded gap; the pool replaces it', async () => {
  const pool = t.gateway.services.pool;
  const run = pool.run.bind(pool);
  let armed = false;
  // The moment a batch is handed to the only thread, that thread is terminated: the batch is in flight.
  pool.run = (task) => {
    const result = run(task);
    if (armed && task.frames.length > 0) {
      armed = false;
      void pool.workers[0]?.terminate();
    }
    return result;
  };
  const calls = [
    placeCall(t, { durationMs: 3000, realtime: true, inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 }, outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 } }),
    placeCall(t, { durationMs: 3000, realtime: true, inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 }, outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 } }),
  ];
  await new Promise((resolve) => setTimeout(resolve, 1200));
  armed = true;
  const results = await Promise.all(calls);
  pool.run = run;
  expect(results.map((r) => r.closeCode)).toEqual([1000, 1000]);
  expect(pool.workers).toHaveLength(1);
  expect(t.logs.find('pipeline batch lost')).toHaveLength(1);

  const rows = await Promise.all(results.map(async (r) => (await recordingsOfCall(t, 'acme', r.callSid))[0]!));
  for (const row of rows) expect(row).toMatchObject({ status: 'completed', durationMs: 3000 });
  const gapped = rows.filter((row) => Array.isArray(row.metadata['gaps']));
  expect(gapped).toHaveLength(1);
  const gaps = gapped[0]!.metadata['gaps'] as Array<{ track: string; fromMs: number; toMs: number; reason: string }>;
  expect(gaps.length).toBeGreaterThanOrEqual(1);
  for (const gap of gaps) {
    expect(gap).toMatchObject({ reason: 'PIPELINE_FAILED' });
    expect(gap.toMs - gap.fromMs).toBeGreaterThan(0);
    expect(gap.toMs - gap.fromMs).toBeLessThanOrEqual(300);
  }

  for (const row of rows) {
    const channels = (await fetchRecording(t, row)).channelSamples as [Int16Array, Int16Array];
    for (const [index, track, hz] of [[0, 'inbound', 440], [1, 'outbound', 1000]] as const) {
      const samples = channels[index];
      expect(samples.length).toBe(48000);
      const gap = row === gapped[0] ? gaps.find((g) => g.track === track) : undefined;
      const spans = gap ? [[100, gap.fromMs - 30], [gap.toMs + 30, 2900]] : [[100, 2900]];
      for (const [from, to] of spans) {
        if (to! - from! < 100) continue;
        expect(toneAmplitude(sliceMs(samples, 16000, from!, to!), 16000, hz)).toBeGreaterThan(TONE * 0.9);
      }
      // The lost span is silence of its exact length: what follows sits where it was sent.
      if (gap) expect(rms(sliceMs(samples, 16000, gap.fromMs + 3, gap.toMs - 3))).toBeLessThan(TONE * 0.05);
    }
  }
});

test('a pipeline that keeps failing fails the recording for good: 1011 with the code, one error log, a metric, the journal kept', async () => {
  const pool = t.gateway.services.pool;
  const run = pool.run.bind(pool);
  pool.run = () => Promise.reject(Object.assign(new Error('worker gone'), { code: 'PIPELINE_FAILED' }));
  let failed: Awaited<ReturnType<typeof recordingsOfCall>>[number] | undefined;
  try {
    const result = await placeCall(t, { durationMs: 2000, realtime: true });
    expect(result.closeCode).toBe(1011);
    expect(result.closeReason).toBe('PIPELINE_FAILED');
    // The stream closes as the recording fails; the row's update follows (it is retried while PostgreSQL is away).
    await expect.poll(async () => (await recordingsOfCall(t, 'acme', result.callSid))[0]).toMatchObject({ status: 'failed', errorCode: 'PIPELINE_FAILED' });
    const [row] = await recordingsOfCall(t, 'acme', result.callSid);
    failed = row;
    expect(t.logs.find('recording failed')).toEqual([expect.objectContaining({ code: 'PIPELINE_FAILED', recordingSid: row!.recordingSid })]);
    const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^callvault_recordings_failed_total\{reason="PIPELINE_FAILED"\} 1$/m);
    // Kept for the next start (or a retry) to finish: the journal holds what the call sent.
    await expect.poll(async () => (await readdir(join(t.dataDir, 'spool'))).sort()).toEqual(
      [`${row!.id}.cvr`, `${row!.id}.journal`, `${row!.id}.json`].sort(),
    );
  } finally {
    pool.run = run;
  }

  // The retry route finishes it from the journal now, with the pipeline working again: everything the gateway
  // accepted before the failure closed the stream (three batches of about 50 ms per track).
  const retried = await api(t, `/api/call-recordings/${failed!.recordingSid}/retry`, { method: 'POST' });
  expect(retried.status).toBe(202);
  await expect.poll(async () => (await t.gateway.db.recordings.get('acme', failed!.id))?.status).toBe('completed');
  const row = (await t.gateway.db.recordings.get('acme', failed!.id))!;
  expect(row).toMatchObject({ errorCode: null });
  expect(row.durationMs!).toBeGreaterThanOrEqual(100);
  expect(row.durationMs!).toBeLessThan(1000);
  const [left, right] = (await fetchRecording(t, row)).channelSamples as [Int16Array, Int16Array];
  expect(left.length).toBe((row.durationMs! * 16000) / 1000);
  expect(toneAmplitude(sliceMs(left, 16000, 20, row.durationMs! - 20), 16000, 440)).toBeGreaterThan(TONE * 0.9);
  expect(toneAmplitude(sliceMs(right, 16000, 20, row.durationMs! - 20), 16000, 1000)).toBeGreaterThan(TONE * 0.9);
  await expect.poll(async () => readdir(join(t.dataDir, 'spool'))).toEqual([]);
  // Once complete there is nothing left to retry.
  expect((await api(t, `/api/call-recordings/${failed!.recordingSid}/retry`, { method: 'POST' })).status).toBe(409);
});
