/**
 * A worker thread that dies mid-call takes the DSP and encryptor state of the calls pinned to it along. Each
 * such call rebuilds its state on the replacement thread from its journal (checked against its spool) and
 * runs the batch it had in flight again: nothing is lost, and every other call is untouched. A batch that
 * fails on a live thread is lost as a recorded gap; a pipeline that keeps failing fails the recording.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { PipelinePool, PipelineSession } from '../../dist/pipeline/pool.js';
import { sliceMs, toneAmplitude } from '../support/audio.js';
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

/** Wraps every session the pool opens from now on; undo() restores the pool. */
function interceptSessions(pool: PipelinePool, wrap: (session: PipelineSession, run: PipelineSession['run']) => PipelineSession['run']): { undo(): void } {
  const openSession = pool.openSession.bind(pool);
  pool.openSession = (dsp, encryptor) => {
    const session = openSession(dsp, encryptor);
    session.run = wrap(session, session.run.bind(session));
    return session;
  };
  return { undo: () => void (pool.openSession = openSession) };
}

test('a worker terminated mid-call: its calls rebuild their state from the journal and lose nothing; the pool replaces it', async () => {
  const pool = t.gateway.services.pool;
  let armed = false;
  let batches = 0;
  // The moment a batch is handed to the only thread, that thread is terminated: the batch is in flight, and
  // both calls' state (pinned to that thread) is gone.
  const intercept = interceptSessions(pool, (_session, run) => (frames, final, signal) => {
    const result = run(frames, final, signal);
    if (frames.length > 0) batches++;
    if (armed && frames.length > 0) {
      armed = false;
      void pool.workers[0]?.terminate();
    }
    return result;
  });
  const calls = [
    placeCall(t, { durationMs: 3000, realtime: true, inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 }, outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 } }),
    placeCall(t, { durationMs: 3000, realtime: true, inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 }, outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 } }),
  ];
  // About a second into both calls (ten batches of ~100 ms each): both have state on the thread by then.
  await expect.poll(() => batches, { timeout: 10_000 }).toBeGreaterThanOrEqual(20);
  armed = true;
  const results = await Promise.all(calls);
  intercept.undo();
  expect(armed).toBe(false);
  expect(results.map((r) => r.closeCode)).toEqual([1000, 1000]);
  expect(pool.workers).toHaveLength(1);
  expect(t.logs.find('pipeline batch lost')).toHaveLength(0);
  expect(t.logs.find('pipeline state rebuilt from the journal')).toHaveLength(2);
  const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
  expect(metrics).toMatch(/^callvault_pipeline_rebuilds_total\{outcome="rebuilt"\} 2$/m);

  const rows = await Promise.all(results.map(async (r) => (await recordingsOfCall(t, 'acme', r.callSid))[0]!));
  for (const row of rows) {
    expect(row).toMatchObject({ status: 'completed', durationMs: 3000 });
    expect(row.metadata['gaps']).toBeUndefined();
    const channels = (await fetchRecording(t, row)).channelSamples as [Int16Array, Int16Array];
    for (const [index, hz] of [[0, 440], [1, 1000]] as const) {
      const samples = channels[index];
      expect(samples.length).toBe(48000);
      // The tone runs unbroken: every 100 ms window of the call holds it at full strength.
      for (let from = 100; from < 2900; from += 100) {
        expect(toneAmplitude(sliceMs(samples, 16000, from, from + 100), 16000, hz)).toBeGreaterThan(TONE * 0.9);
      }
    }
  }
});

test('a pipeline that keeps failing fails the recording for good: 1011 with the code, one error log, a metric, the journal kept', async () => {
  const pool = t.gateway.services.pool;
  const intercept = interceptSessions(pool, () => () => Promise.reject(Object.assign(new Error('batch failed'), { code: 'PIPELINE_FAILED' })));
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
    intercept.undo();
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
