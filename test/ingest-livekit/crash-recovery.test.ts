/**
 * A LiveKit room recording survives the gateway being killed: a real `node dist/main.js` records a room of
 * the real LiveKit server, is SIGKILLed while a participant speaks, and the restart on the same DATA_DIR
 * finishes the recording from its journal, with the tone up to the kill.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { dispose } from '@livekit/rtc-node';
import { RoomServiceClient } from 'livekit-server-sdk';
import { freshBucket, freshDatabase, uniqueName } from '../support/peers.js';
import { gatewayEnv, startGatewayProcess } from '../support/process.js';
import { PUBLISHED_AMPLITUDE, decryptRecording, livekitPeer, publisher, recordingRows, toneIn, until } from './support.js';

const CALLER_HZ = 440;

afterAll(async () => {
  await dispose();
});

test('SIGKILL while a room is recorded: the restart completes the room recording from the spool', async () => {
  const peer = livekitPeer();
  const rooms = new RoomServiceClient(peer.url.replace('ws://', 'http://'), peer.apiKey, peer.apiSecret);
  const db = await freshDatabase();
  const bucket = await freshBucket();
  const dataDir = await mkdtemp(join(tmpdir(), 'callvault-lk-crash-'));
  const masterKey = randomBytes(32);
  const apiKey = `cvtest_${randomBytes(16).toString('hex')}`;
  const env = gatewayEnv(
    { dataDir, databaseUrl: db.url, bucket, publicUrl: 'http://127.0.0.1' },
    {
      MASTER_KEY: masterKey.toString('base64'),
      MASTER_KEY_ID: 'lk-crash',
      API_KEYS: `lk-org:${apiKey}`,
      LIVEKIT_URL: peer.url,
      LIVEKIT_API_KEY: peer.apiKey,
      LIVEKIT_API_SECRET: peer.apiSecret,
      LIVEKIT_ORG: 'lk-org',
    },
  );
  const first = startGatewayProcess(env);
  let second: ReturnType<typeof startGatewayProcess> | undefined;
  const room = uniqueName('crash');
  try {
    const port = await first.listening();
    const created = await rooms.createRoom({ name: room });
    const started = await fetch(`http://127.0.0.1:${port}/livekit/rooms/${room}/recording`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ enabled: true, stereo: true }),
    });
    expect(started.status).toBe(201);
    const caller = await publisher(room, 'caller-1', CALLER_HZ);
    const speaking = caller.speak(6);
    // Three seconds of speech reach the gateway, then it dies without any chance to finalise.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await first.kill('SIGKILL');
    await speaking;
    await caller.leave();

    second = startGatewayProcess(env);
    await second.listening();
    const row = await until(
      'the room recording to be recovered',
      async () => (await recordingRows(db.url)).find((r) => r.call_external_id === created.sid && r.status === 'completed'),
      30_000,
    );
    const durationS = Number(row.duration_ms) / 1000;
    // Joining and subscribing take some of the three seconds; what arrived before the kill is kept.
    expect(durationS).toBeGreaterThan(1.5);
    expect(durationS).toBeLessThan(6);
    const { channels, sampleRate } = await decryptRecording(row, masterKey);
    expect(channels[0]!.length).toBe(Math.round(durationS * sampleRate));
    // The caller's tone, on the left, runs up to the end of what was made durable.
    expect(toneIn(channels[0]!, sampleRate, CALLER_HZ, durationS - 0.8, durationS - 0.1)).toBeGreaterThan(PUBLISHED_AMPLITUDE * 0.8);
    expect(toneIn(channels[1]!, sampleRate, CALLER_HZ, 0, durationS)).toBeLessThan(PUBLISHED_AMPLITUDE * 0.05);
    await expect.poll(async () => readdir(join(dataDir, 'spool'))).toEqual([]);
  } finally {
    await first.kill('SIGKILL');
    await second?.kill('SIGKILL');
    await rooms.deleteRoom(room).catch(() => undefined);
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
});
