/**
 * A LiveKit Track Egress sender faster than the pipeline is slowed down, not cut off: 5 minutes of a room
 * (48 kHz pcm_s16le in 20 ms frames, as Track Egress sends it) sent far faster than real time is recorded
 * whole. Beyond the audio allowed to wait in memory (30 s by default, a quarter of a second here), frames are kept only in the journal on disk and the pipeline catches up
 * from there, so memory stays bounded. The gateway's clock stands still while the audio arrives, so every frame
 * of a track follows the one before it on the timeline, and moves on by the room's five minutes before the sockets
 * close; the ahead-of-clock bound (MAX_AHEAD_OF_CLOCK_SECONDS, 10 s by default, egress.test.ts) is raised to 10
 * minutes here so that the whole room fits ahead of the standing clock.
 *
 * One socket is sent as fast as it takes it. With two sockets (caller and agent) each second of both tracks is
 * sent as fast as the sockets take it, and the next once the gateway has taken that second in: the sockets are
 * independent TCP connections, and sent flat out one can be delivered tens of seconds ahead of the other (their
 * kernel buffers differ), beyond what the pipeline waits for a lagging track (2 s); see the README.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import WebSocket from 'ws';
import { signEgressUrl } from '../../dist/ingest/livekit/index.js';
import { generateTone, pcm16ToBytes, rms, sliceMs, toneAmplitude } from '../support/audio.js';
import { uniqueName } from '../support/peers.js';
import { decryptRecording, OUTPUT_RATE, recordingRows, startTestGateway, until, type TestGateway } from './support.js';

const CALL_MS = 5 * 60_000;
const EGRESS_RATE = 48_000;
const FRAME_SAMPLES = 960; // 20 ms
const FRAMES_PER_SECOND = EGRESS_RATE / FRAME_SAMPLES;
const FRAMES = (CALL_MS / 1000) * FRAMES_PER_SECOND;
const CALLER_HZ = 440;
const AGENT_HZ = 1_000;
const AMPLITUDE = 8_000;

let clock = 1_800_000_000_000;
let gw: TestGateway;

beforeAll(async () => {
  // A quarter of a second of audio in memory (the default is 30 s): the pipeline is fast enough to keep up with
  // these senders most of the time, and the switch to the journal is what this file is about, so it must happen.
  gw = await startTestGateway({ now: () => clock, maxAheadOfClockMs: 600_000, batcherLimits: { maxPendingMediaMs: 250, maxJournalBacklogBytes: 256 * 1024 * 1024 } });
});
afterAll(async () => {
  await gw?.stop();
});

async function counter(metric: 'framesReceived' | 'framesDropped', labels: Record<string, string>): Promise<number> {
  const { values } = await gw.gateway.metrics[metric].get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function send(ws: WebSocket, frame: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => ws.send(frame, { binary: true }, (err) => (err ? reject(err) : resolve())));
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve();
    else ws.once('close', () => resolve());
  });
}

type Role = 'caller' | 'agent';
const TONES: Record<Role, number> = { caller: CALLER_HZ, agent: AGENT_HZ };

function frame(role: Role, index: number): Uint8Array {
  return pcm16ToBytes(generateTone({ frequency: TONES[role], sampleRate: EGRESS_RATE, samples: FRAME_SAMPLES, amplitude: AMPLITUDE, startSample: index * FRAME_SAMPLES }));
}

async function received(role: Role): Promise<number> {
  return counter('framesReceived', { source: 'livekit', track: role });
}

test.each<{ case: string; roles: Role[]; lockstepSeconds: number | null }>([
  { case: 'one socket, as fast as it takes it', roles: ['caller'], lockstepSeconds: null },
  { case: 'caller and agent sockets, second by second', roles: ['caller', 'agent'], lockstepSeconds: 1 },
])(
  'a 5-minute egress room sent far faster than real time is recorded whole, catching up from the journal ($case)',
  async ({ roles, lockstepSeconds }) => {
    const room = uniqueName('fast-egress');
    const roomSid = `RM_${room}`;
    const url = (role: Role) =>
      signEgressUrl(gw.baseUrl, { room, roomSid, participant: `${role}-1`, track: `TR_${role}`, role, sampleRate: EGRESS_RATE }, { masterKey: gw.masterKey, expiresAtMs: clock + 3_600_000 });
    const before = {
      caller: await received('caller'),
      agent: await received('agent'),
      dropped: await counter('framesDropped', { source: 'livekit' }),
      late: await counter('framesDropped', { source: 'pipeline' }),
      catchUps: gw.logs.find('stream ahead of the pipeline, catching up from the journal').length,
    };
    const start = clock;
    const sockets = await Promise.all(roles.map(async (role) => ({ role, ws: await connect(url(role)) })));

    const sentAt = Date.now();
    const step = lockstepSeconds === null ? FRAMES : lockstepSeconds * FRAMES_PER_SECOND;
    for (let from = 0; from < FRAMES; from += step) {
      const to = Math.min(FRAMES, from + step);
      // Every socket's frames of this step, each send awaited only until its socket has taken it.
      await Promise.all(
        sockets.map(async ({ role, ws }) => {
          for (let i = from; i < to; i++) await send(ws, frame(role, i));
        }),
      );
      if (lockstepSeconds !== null) {
        for (const { role } of sockets) {
          while ((await received(role)) - before[role] < to) await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    }
    await until(
      'every frame taken in',
      async () => {
        for (const { role } of sockets) if ((await received(role)) - before[role] !== FRAMES) return false;
        return true;
      },
      60_000,
    );
    // Far faster than real time: the pipeline fell behind and read the rest back from the journal.
    expect(Date.now() - sentAt).toBeLessThan(CALL_MS / 4);
    expect(gw.logs.find('stream ahead of the pipeline, catching up from the journal').length).toBeGreaterThan(before.catchUps);
    expect(await counter('framesDropped', { source: 'livekit' })).toBe(before.dropped);

    // The room's five minutes have passed when the egress sockets close.
    clock = start + CALL_MS;
    for (const { ws } of sockets) ws.close(1000);
    await Promise.all(sockets.map(({ ws }) => closed(ws)));

    const row = await until(
      'the recording to complete',
      async () => {
        const rows = (await recordingRows(gw.databaseUrl)).filter((r) => r.call_external_id === roomSid);
        return rows.length === 1 && rows[0]!.status === 'completed' ? rows[0] : null;
      },
      240_000,
    );
    expect(Number(row.duration_ms)).toBe(CALL_MS);
    expect(gw.logs.find('recording failed')).toEqual([]);
    // No track got so far behind another that the pipeline gave up on any of its audio as late.
    expect(await counter('framesDropped', { source: 'pipeline' })).toBe(before.late);
    const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
    expect(sampleRate).toBe(OUTPUT_RATE);
    const [left, right] = channels as [Int16Array, Int16Array];
    expect(left.length).toBe((CALL_MS / 1000) * OUTPUT_RATE);
    expect(right.length).toBe((CALL_MS / 1000) * OUTPUT_RATE);
    // The tones run through the whole room, across the switch to the journal and back, each on its channel.
    for (const atMs of [1_000, 29_000, 31_000, 60_000, 150_000, 298_000]) {
      const l = sliceMs(left, OUTPUT_RATE, atMs, atMs + 500);
      const r = sliceMs(right, OUTPUT_RATE, atMs, atMs + 500);
      expect(toneAmplitude(l, OUTPUT_RATE, CALLER_HZ), `caller at ${atMs} ms`).toBeGreaterThan(AMPLITUDE * 0.9);
      expect(toneAmplitude(l, OUTPUT_RATE, AGENT_HZ)).toBeLessThan(AMPLITUDE * 0.01);
      if (roles.includes('agent')) {
        expect(toneAmplitude(r, OUTPUT_RATE, AGENT_HZ), `agent at ${atMs} ms`).toBeGreaterThan(AMPLITUDE * 0.9);
        expect(toneAmplitude(r, OUTPUT_RATE, CALLER_HZ)).toBeLessThan(AMPLITUDE * 0.01);
      } else {
        expect(rms(r), `no agent at ${atMs} ms`).toBeLessThan(AMPLITUDE * 0.01);
      }
    }
  },
  360_000,
);

test('an egress sender beyond the hard bound is closed with 1013, and everything it sent before is recorded', async () => {
  // Bounds small enough to reach even with a pipeline that nearly keeps up: a quarter of a second of audio in
  // memory, then 48 KiB of journal ahead of the pipeline (a catch-up batch reads about 2 s back at a time).
  const bounded = await startTestGateway({ now: () => clock, maxAheadOfClockMs: 600_000, batcherLimits: { maxPendingMediaMs: 250, maxJournalBacklogBytes: 48 * 1024 } });
  try {
    const room = uniqueName('overloaded-egress');
    const roomSid = `RM_${room}`;
    const url = signEgressUrl(bounded.baseUrl, { room, roomSid, participant: 'caller-1', track: 'TR_caller', role: 'caller', sampleRate: EGRESS_RATE }, { masterKey: bounded.masterKey, expiresAtMs: clock + 3_600_000 });
    const ws = await connect(url);
    const closing = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    let sent = 0;
    // Flat out, far beyond the bound, until the gateway closes the socket.
    for (; sent < FRAMES && ws.readyState === WebSocket.OPEN; sent++) await send(ws, frame('caller', sent)).catch(() => undefined);
    expect(await closing).toEqual({ code: 1013, reason: 'OVERLOADED' });
    expect(sent).toBeLessThan(FRAMES);
    const { values } = await bounded.gateway.metrics.framesReceived.get();
    const taken = values.filter((v) => v.labels['source'] === 'livekit').reduce((n, v) => n + v.value, 0);

    const row = await until(
      'the recording to complete',
      async () => {
        const rows = (await recordingRows(bounded.databaseUrl)).filter((r) => r.call_external_id === roomSid);
        return rows.length === 1 && rows[0]!.status === 'completed' ? rows[0] : null;
      },
      120_000,
    );
    // Every frame the gateway took in, the one that crossed the bound included (journaled before the check), is
    // in the recording, in order; what arrived after the close began was never taken.
    expect(Number(row.duration_ms)).toBe(taken * 20);
    expect(bounded.logs.find('livekit egress socket closed: its audio cannot be taken')).toHaveLength(1);
    const { channels } = await decryptRecording(row, bounded.masterKey);
    const left = channels[0]!;
    for (const atMs of [500, Math.floor(Number(row.duration_ms) / 2), Number(row.duration_ms) - 600]) {
      expect(toneAmplitude(sliceMs(left, OUTPUT_RATE, atMs, atMs + 500), OUTPUT_RATE, CALLER_HZ), `caller at ${atMs} ms`).toBeGreaterThan(AMPLITUDE * 0.9);
    }
  } finally {
    await bounded.stop();
  }
}, 240_000);
