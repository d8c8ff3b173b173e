/**
 * The gateway's own event loop stalls mid-call (here: the test blocks it, the gateway runs in this process)
 * while two Track Egress senders in a worker thread keep sending 20 ms frames on their own clock. The audio
 * they sent meanwhile waits in the sockets and arrives as a burst: it must be recorded contiguously, not
 * after inserted silence, because the pause was ours and not the senders'.
 */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { processLoopWatch, signEgressUrl } from '../../dist/ingest/livekit/index.js';
import { uniqueName } from '../support/peers.js';
import { decryptRecording, recordingRows, rmsIn, startTestGateway, toneIn, until, type TestGateway } from './support.js';

const EGRESS_RATE = 48_000;
const FRAME_SAMPLES = 960; // 20 ms
const CALLER_HZ = 440;
const AGENT_HZ = 1_000;
const AMPLITUDE = 8_000;
const CALL_S = 4;
const STALL_AT_MS = 1_500;
const STALL_MS = 800;

/** Senders of their own (CommonJS, evaluated in a worker): real-time 20 ms frames of a tone per socket. */
const SENDER = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const WebSocket = require('ws');
const { urls, tones, rate, frameSamples, seconds, amplitude } = workerData;
const frame = (hz, index) => {
  const buf = Buffer.alloc(frameSamples * 2);
  for (let k = 0; k < frameSamples; k++) {
    const n = index * frameSamples + k;
    buf.writeInt16LE(Math.round(amplitude * Math.sin((2 * Math.PI * hz * n) / rate)), 2 * k);
  }
  return buf;
};
const open = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.once('open', () => resolve(ws));
  ws.once('error', reject);
});
(async () => {
  const sockets = await Promise.all(urls.map(open));
  parentPort.postMessage({ kind: 'open' });
  await new Promise((resolve) => parentPort.once('message', resolve));
  const frames = Math.round((seconds * rate) / frameSamples);
  const frameMs = (frameSamples * 1000) / rate;
  const start = performance.now();
  let sent = 0;
  while (sent < frames) {
    const due = Math.min(frames, Math.floor((performance.now() - start) / frameMs) + 1);
    for (; sent < due; sent++) sockets.forEach((ws, s) => ws.send(frame(tones[s], sent), { binary: true }));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  await Promise.all(sockets.map((ws) => new Promise((resolve) => { ws.once('close', resolve); ws.close(1000); })));
  parentPort.postMessage({ kind: 'done', frames: sent });
})().catch((err) => parentPort.postMessage({ kind: 'error', message: String(err && err.stack || err) }));
`;

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.stop();
});

/** Index (s) of the first and last sample louder than a quarter of the tone. */
function audibleSpan(channel: Int16Array, sampleRate: number): { fromS: number; toS: number } {
  const loud = AMPLITUDE / 4;
  let first = -1;
  let last = -1;
  for (let i = 0; i < channel.length; i++) {
    if (Math.abs(channel[i]!) > loud) {
      if (first < 0) first = i;
      last = i;
    }
  }
  return { fromS: first / sampleRate, toS: (last + 1) / sampleRate };
}

describe('an event-loop stall of the gateway during a LiveKit egress call', () => {
  test('audio that waited in the sockets during an 800 ms stall is recorded contiguously: duration = audio sent, no silence', async () => {
    const room = uniqueName('stall');
    const roomSid = `RM_${room}`;
    const url = (participant: string, track: string, role: 'caller' | 'agent'): string =>
      signEgressUrl(gw.baseUrl, { room, roomSid, participant, track, role, sampleRate: EGRESS_RATE }, { masterKey: gw.masterKey, expiresAtMs: Date.now() + 3_600_000 });
    const worker = new Worker(SENDER, {
      eval: true,
      workerData: {
        urls: [url('caller-1', 'TR_caller', 'caller'), url('agent-1', 'TR_agent', 'agent')],
        tones: [CALLER_HZ, AGENT_HZ],
        rate: EGRESS_RATE,
        frameSamples: FRAME_SAMPLES,
        seconds: CALL_S,
        amplitude: AMPLITUDE,
      },
    });
    try {
      const messages: Array<{ kind: string; frames?: number; message?: string }> = [];
      worker.on('message', (m: { kind: string }) => messages.push(m));
      worker.on('error', (err) => messages.push({ kind: 'error', message: String(err) }));
      await until('the senders to connect', () => messages.find((m) => m.kind === 'open' || m.kind === 'error'));
      expect(messages.find((m) => m.kind === 'error')).toBeUndefined();
      await until('the room recording to start', async () => ((await gw.gateway.metrics.activeRecordings.get()).values[0]?.value ?? 0) >= 1);
      worker.postMessage('go');

      await new Promise((resolve) => setTimeout(resolve, STALL_AT_MS));
      // The gateway runs on this thread: while this spins, it reads no socket and runs no timer.
      const stallStart = processLoopWatch.now();
      const stallEnd = performance.now() + STALL_MS;
      while (performance.now() < stallEnd) {
        // Blocked.
      }
      // The gateway's watch sees the stall (still in progress: no timer has run since).
      expect(processLoopWatch.stalledMs(stallStart, processLoopWatch.now())).toBeGreaterThanOrEqual(STALL_MS - 2 * 20);

      const done = await until('the senders to finish', () => messages.find((m) => m.kind === 'done' || m.kind === 'error'));
      expect(done).toMatchObject({ kind: 'done', frames: (CALL_S * EGRESS_RATE) / FRAME_SAMPLES });
    } finally {
      await worker.terminate();
    }

    const row = await until('the recording to complete', async () => {
      const rows = (await recordingRows(gw.databaseUrl)).filter((r) => r.call_external_id === roomSid);
      return rows.length === 1 && rows[0]!.status === 'completed' ? rows[0] : null;
    });
    expect(row.channels).toBe(2);
    const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
    const frameS = FRAME_SAMPLES / EGRESS_RATE;
    const spans = channels.map((c) => audibleSpan(c, sampleRate));
    for (const [index, hz] of [CALLER_HZ, AGENT_HZ].entries()) {
      const channel = channels[index]!;
      const span = spans[index]!;
      // Each track starts within a few frames of the recording's start and lasts exactly the audio sent.
      expect(span.fromS).toBeLessThan(0.2);
      expect(Math.abs(span.toS - span.fromS - CALL_S)).toBeLessThanOrEqual(2 * frameS);
      // The tone is there in every 100 ms window, the stall's included, and never falls silent for 20 ms.
      for (let t = span.fromS + 0.05; t + 0.1 <= span.toS - 0.05; t += 0.1) {
        expect(toneIn(channel, sampleRate, hz, t, t + 0.1), `${hz} Hz at ${t.toFixed(2)} s`).toBeGreaterThan(AMPLITUDE * 0.8);
      }
      for (let t = span.fromS + 0.05; t + frameS <= span.toS - 0.05; t += frameS) {
        expect(rmsIn(channel, sampleRate, t, t + frameS), `silence at ${t.toFixed(2)} s`).toBeGreaterThan(AMPLITUDE * 0.5);
      }
    }
    // The recording is as long as the audio sent (from where the first track started), within two frames.
    const startS = Math.min(...spans.map((s) => s.fromS));
    expect(Math.abs(Number(row.duration_ms) / 1000 - startS - CALL_S)).toBeLessThanOrEqual(2 * frameS + 0.001);
  });
});
