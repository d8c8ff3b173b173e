/**
 * Track Egress WebSocket mode: a client that sends exactly what LiveKit Track Egress sends (binary
 * pcm_s16le frames at 48 kHz, `{"muted": …}` text frames), on a gateway whose clock the test drives.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { RoomServiceClient } from 'livekit-server-sdk';
import { signEgressUrl } from '../../dist/ingest/livekit/index.js';
import { generateTone, pcm16ToBytes } from '../support/audio.js';
import { uniqueName } from '../support/peers.js';
import { decryptRecording, livekitPeer, OUTPUT_RATE, recordingRows, rmsIn, startTestGateway, toneIn, until, type TestGateway } from './support.js';

const EGRESS_RATE = 48_000;
const FRAME_SAMPLES = 960; // LiveKit egress sends 20 ms Opus frames decoded to PCM
const CALLER_HZ = 440;
const AGENT_HZ = 1_000;
const AMPLITUDE = 8_000;

let clock = 1_800_000_000_000;
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({ now: () => clock });
});
afterAll(async () => {
  await gw?.stop();
});

async function framesSeen(role: 'caller' | 'agent'): Promise<number> {
  const { values } = await gw.gateway.metrics.framesReceived.get();
  return values.find((v) => v.labels['source'] === 'livekit' && v.labels['track'] === role)?.value ?? 0;
}

async function activeRecordings(): Promise<number> {
  return (await gw.gateway.metrics.activeRecordings.get()).values[0]?.value ?? 0;
}

function egressUrl(target: { room: string; roomSid?: string; participant: string; track: string; role: 'caller' | 'agent' }, expiresAtMs = clock + 3_600_000): string {
  return signEgressUrl(gw.baseUrl, { ...target, sampleRate: EGRESS_RATE }, { masterKey: gw.masterKey, expiresAtMs });
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
  });
}

/** Sends `seconds` of a tone as 20 ms binary frames, continuing the tone's phase from `startSample`. */
function sendTone(ws: WebSocket, frequency: number, startSample: number, seconds: number): number {
  const total = Math.round(seconds * EGRESS_RATE);
  for (let offset = 0; offset < total; offset += FRAME_SAMPLES) {
    const tone = generateTone({ frequency, sampleRate: EGRESS_RATE, samples: FRAME_SAMPLES, amplitude: AMPLITUDE, startSample: startSample + offset });
    ws.send(pcm16ToBytes(tone), { binary: true });
  }
  return total / FRAME_SAMPLES;
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve();
    else ws.once('close', () => resolve());
  });
}

describe('GET /livekit/egress', () => {
  test('a socket that reconnects within the grace period continues the same recording', async () => {
    const peer = livekitPeer();
    const room = uniqueName('reconnect');
    const rooms = new RoomServiceClient(peer.url.replace('ws://', 'http://'), peer.apiKey, peer.apiSecret);
    const created = await rooms.createRoom({ name: room, metadata: JSON.stringify({ recording: { enabled: true, stereo: false } }) });
    const target = { room, roomSid: created.sid, participant: 'caller-1', track: 'TR_caller', role: 'caller' as const };
    const start = clock;
    const before = await framesSeen('caller');

    const first = await connect(egressUrl(target));
    let frames = sendTone(first, CALLER_HZ, 0, 1.0);
    await until('first socket frames', async () => (await framesSeen('caller')) - before === frames);
    first.close(1000);
    await closed(first);

    // The egress reconnects at t=1 and carries on where it left off.
    clock = start + 1000;
    const second = await connect(egressUrl(target));
    frames += sendTone(second, CALLER_HZ, EGRESS_RATE, 1.0);
    await until('second socket frames', async () => (await framesSeen('caller')) - before === frames);
    clock = start + 2000;
    second.close(1000);
    await closed(second);

    const row = await until('the recording to complete', async () => {
      const rows = (await recordingRows(gw.databaseUrl)).filter((r) => r.call_external_id === created.sid);
      return rows.every((r) => r.status === 'completed') && rows.length > 0 ? rows : null;
    });
    expect(row).toHaveLength(1);
    expect(Number(row[0]!.duration_ms)).toBeGreaterThanOrEqual(1_990);
    const { channels, sampleRate } = await decryptRecording(row[0]!, gw.masterKey);
    expect(toneIn(channels[0]!, sampleRate, CALLER_HZ, 0.05, 0.95)).toBeGreaterThan(AMPLITUDE * 0.8);
    expect(toneIn(channels[0]!, sampleRate, CALLER_HZ, 1.05, 1.95)).toBeGreaterThan(AMPLITUDE * 0.8);
  });


  test.each([
    { case: 'stereo, room SID in the URL, server default options', stereo: true, sidInUrl: true },
    { case: 'mono from the room metadata LiveKit returns for the room', stereo: false, sidInUrl: false },
  ])('combines a caller and a late, then muted, agent into one room recording ($case)', async ({ stereo, sidInUrl }) => {
    const peer = livekitPeer();
    const room = uniqueName('egress');
    const rooms = new RoomServiceClient(peer.url.replace('ws://', 'http://'), peer.apiKey, peer.apiSecret);
    const created = await rooms.createRoom({ name: room, metadata: JSON.stringify({ recording: { enabled: true, stereo } }) });
    const roomSid = created.sid;
    const before = { caller: await framesSeen('caller'), agent: await framesSeen('agent') };
    const start = clock;
    const at = (seconds: number): void => {
      clock = start + seconds * 1000;
    };

    // t=0: the caller's socket opens and 1 s of audio arrives in one burst (jitter must not spread it).
    const caller = await connect(egressUrl({ room, ...(sidInUrl ? { roomSid } : {}), participant: 'caller-1', track: 'TR_caller', role: 'caller' }));
    await until('the room recording to start', async () => (await activeRecordings()) === 1);
    let callerFrames = sendTone(caller, CALLER_HZ, 0, 1.0);
    await until('caller frames', async () => (await framesSeen('caller')) - before.caller === callerFrames);

    // t=0.5: the agent joins late and speaks until t=3.
    at(0.5);
    const agent = await connect(egressUrl({ room, ...(sidInUrl ? { roomSid } : {}), participant: 'agent-1', track: 'TR_agent', role: 'agent' }));
    const agentFrames = sendTone(agent, AGENT_HZ, 0, 2.5);
    await until('agent frames', async () => (await framesSeen('agent')) - before.agent === agentFrames);

    // t=1: the caller mutes; Track Egress may still deliver frames, which must not be recorded.
    at(1.0);
    caller.send(JSON.stringify({ muted: true }));
    callerFrames += sendTone(caller, CALLER_HZ, 0, 0.5);
    await until('muted caller frames', async () => (await framesSeen('caller')) - before.caller === callerFrames);

    // t=2: unmute; the caller speaks until t=3.
    at(2.0);
    caller.send(JSON.stringify({ muted: false }));
    callerFrames += sendTone(caller, CALLER_HZ, 2 * EGRESS_RATE, 1.0);
    await until('caller frames after unmute', async () => (await framesSeen('caller')) - before.caller === callerFrames);

    at(3.0);
    caller.close(1000);
    agent.close(1000);
    await Promise.all([closed(caller), closed(agent)]);
    const row = await until('the recording to complete', async () => {
      const rows = (await recordingRows(gw.databaseUrl)).filter((r) => r.call_external_id === roomSid);
      return rows.length === 1 && rows[0]!.status === 'completed' ? rows[0] : null;
    });
    expect(row.channels).toBe(stereo ? 2 : 1);
    expect(Number(row.duration_ms)).toBeGreaterThanOrEqual(2_990);
    expect(Number(row.duration_ms)).toBeLessThanOrEqual(3_010);

    const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
    expect(sampleRate).toBe(OUTPUT_RATE);
    expect(Math.abs(channels[0]!.length - 3 * OUTPUT_RATE)).toBeLessThanOrEqual(OUTPUT_RATE / 100);
    const present = AMPLITUDE * 0.8;
    const absent = AMPLITUDE * 0.01;
    // Windows stay 50 ms clear of each boundary; resampler filters smear edges by a few ms.
    if (stereo) {
      const [left, right] = channels as [Int16Array, Int16Array];
      expect(toneIn(left, sampleRate, CALLER_HZ, 0.05, 0.95)).toBeGreaterThan(present);
      expect(rmsIn(left, sampleRate, 1.05, 1.95)).toBeLessThan(absent);
      expect(toneIn(left, sampleRate, CALLER_HZ, 2.05, 2.95)).toBeGreaterThan(present);
      expect(toneIn(left, sampleRate, AGENT_HZ, 0.05, 2.95)).toBeLessThan(absent);
      expect(rmsIn(right, sampleRate, 0.0, 0.45)).toBeLessThan(absent);
      expect(toneIn(right, sampleRate, AGENT_HZ, 0.55, 2.95)).toBeGreaterThan(present);
      expect(toneIn(right, sampleRate, CALLER_HZ, 0.05, 2.95)).toBeLessThan(absent);
    } else {
      const [mono] = channels as [Int16Array];
      expect(toneIn(mono, sampleRate, CALLER_HZ, 0.05, 0.45)).toBeGreaterThan(present / 2);
      expect(toneIn(mono, sampleRate, AGENT_HZ, 0.05, 0.45)).toBeLessThan(absent);
      expect(toneIn(mono, sampleRate, AGENT_HZ, 0.55, 2.95)).toBeGreaterThan(present / 2);
      expect(toneIn(mono, sampleRate, CALLER_HZ, 1.05, 1.95)).toBeLessThan(absent);
      expect(toneIn(mono, sampleRate, CALLER_HZ, 2.05, 2.95)).toBeGreaterThan(present / 2);
    }
    await rooms.deleteRoom(room).catch(() => undefined);
  });

  test.each([
    { case: 'unsigned', url: () => `${gw.baseUrl.replace('http', 'ws')}/livekit/egress?room=r&participant=p&track=t&role=caller&rate=48000` },
    {
      case: 'signed with another key',
      url: () => signEgressUrl(gw.baseUrl, { room: 'r', participant: 'p', track: 't' }, { masterKey: new Uint8Array(32).fill(1), expiresAtMs: clock + 60_000 }),
    },
    { case: 'expired', url: () => egressUrl({ room: 'r', roomSid: 'RM_x', participant: 'p', track: 't', role: 'caller' }, clock - 1_000) },
    {
      case: 'valid for longer than SIGNED_URL_MAX_LIFETIME_SECONDS (24 h; an exp in 2100)',
      url: () => egressUrl({ room: 'r', roomSid: 'RM_x', participant: 'p', track: 't', role: 'caller' }, Date.UTC(2100, 0, 1)),
    },
    {
      case: 'tampered (participant changed after signing)',
      url: () => egressUrl({ room: 'r', roomSid: 'RM_x', participant: 'p', track: 't', role: 'caller' }).replace('participant=p', 'participant=q'),
    },
  ])('refuses an $case URL with 403 before any audio', async ({ url }) => {
    const rowsBefore = (await recordingRows(gw.databaseUrl)).length;
    await expect(connect(url())).rejects.toMatchObject({ status: 403 });
    expect((await recordingRows(gw.databaseUrl)).length).toBe(rowsBefore);
  });

  test('a flood of refused upgrades logs one line, not one per attempt', async () => {
    const before = gw.logs.find('livekit egress upgrade refused').length;
    const url = egressUrl({ room: 'r', roomSid: 'RM_x', participant: 'p', track: 't', role: 'caller' }, clock - 1_000);
    for (let i = 0; i < 200; i++) await expect(connect(url)).rejects.toMatchObject({ status: 403 });
    expect(gw.logs.find('livekit egress upgrade refused').length - before).toBeLessThanOrEqual(1);
  });

  test('audio further ahead of wall-clock time than MAX_AHEAD_OF_CLOCK_SECONDS closes the socket with 4405; the 10 s before are recorded', async () => {
    const room = uniqueName('ahead');
    const roomSid = `RM_${room}`;
    const ws = await connect(egressUrl({ room, roomSid, participant: 'caller-1', track: 'TR_caller', role: 'caller' }));
    const closing = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    // 40 s of audio while the gateway's clock stands still: a replay far faster than real time.
    sendTone(ws, CALLER_HZ, 0, 40);
    expect(await closing).toEqual({ code: 4405, reason: 'STREAM_AHEAD_OF_CLOCK' });
    const row = await until('the recording to complete', async () => {
      const rows = (await recordingRows(gw.databaseUrl)).filter((r) => r.call_external_id === roomSid);
      return rows.length === 1 && rows[0]!.status === 'completed' ? rows[0] : null;
    });
    // Exactly at the bound is allowed (as for Twilio): 500 frames of 20 ms, the 501st refused.
    expect(Number(row.duration_ms)).toBe(10_000);
    const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
    expect(toneIn(channels[0]!, sampleRate, CALLER_HZ, 0.05, 9.95)).toBeGreaterThan(AMPLITUDE * 0.8);
    expect(gw.logs.find('livekit egress socket closed: its audio cannot be taken').filter((l) => l['code'] === 'STREAM_AHEAD_OF_CLOCK').length).toBeLessThanOrEqual(1);
  });
});
