/**
 * Spool checkpoints to S3 with real processes: three `node dist/main.js` gateways on one PostgreSQL database and
 * one MinIO bucket, checkpointing every second. A gateway is killed with SIGKILL mid-call and its volume deleted:
 * a peer takes the interrupted recording over from its checkpoints and completes it with the audio up to the last
 * checkpoint, and the checkpoint objects go. A gateway killed and restarted on its volume after a peer took its
 * recording over does not finish it a second time; one restarted before the takeover period finishes it itself.
 * The S3 requests a checkpointed recording costs, counted; checkpoints failing while S3 is away; and the dead
 * owner back on its volume while the peer that took its recording over cannot reach S3 yet: it lets go.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { sliceMs, toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, testAccount } from '../support/gateway.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { freshBucket, freshDatabase, s3Client, s3Peer } from '../support/peers.js';
import { gatewayEnv, startGatewayProcess } from '../support/process.js';
import { asTestGateway, framesOn, memberCall, type Member } from '../support/fleet.js';
import { RawTwilioStream } from '../support/twilio.js';
import { decodeWav } from '../api/support.js';

const RATE = 16000;
const IDS = ['ck-a', 'ck-b', 'ck-c'] as const;
const account = testAccount('acme');
const apiKey = `acme-ckpt-${randomBytes(12).toString('hex')}`;
const masterKey = randomBytes(32).toString('base64');


let db: Awaited<ReturnType<typeof freshDatabase>>;
let bucket: string;
let s3: S3Client;
let proxy: FaultProxy | undefined;
const members: Member[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  bucket = await freshBucket();
  s3 = s3Client();
  for (const id of IDS) {
    const dataDir = await mkdtemp(join(tmpdir(), `callvault-${id}-`));
    const env = envFor(id, dataDir);
    members.push({ id, dataDir, env, proc: startGatewayProcess(env), port: 0 });
  }
  for (const m of members) m.port = await m.proc.listening();
}, 120_000);

function envFor(id: string, dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return gatewayEnv(
    { dataDir, databaseUrl: db.url, bucket, publicUrl: PUBLIC_URL },
    {
      GATEWAY_ID: id,
      HEARTBEAT_INTERVAL_SECONDS: '0.5',
      GATEWAY_DEAD_AFTER_SECONDS: '2',
      SPOOL_CHECKPOINT_SECONDS: '1',
      SPOOL_CHECKPOINT_TAKEOVER_SECONDS: '5',
      MASTER_KEY: masterKey,
      MASTER_KEY_ID: 'ckpt-test',
      TWILIO_ACCOUNTS: `acme:${account.accountSid}:${account.authToken}`,
      API_KEYS: `acme:${apiKey}`,
      CONTROL_RATE_LIMIT_PER_MINUTE: '1000',
      LOG_LEVEL: 'debug',
      ...extra,
    },
  );
}

afterAll(async () => {
  for (const m of members) await m.proc.kill('SIGKILL');
  s3?.destroy();
  await proxy?.close();
  await db?.drop();
  for (const m of members) await rm(m.dataDir, { recursive: true, force: true });
});

function call(m: Member, method: string, path: string): Promise<Response> {
  return memberCall(m, apiKey, method, path);
}

async function recordingOfCall(m: Member, callSid: string): Promise<any> {
  const res = await call(m, 'GET', `/api/call-recordings?callSid=${callSid}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as any).recordings[0];
}


async function labelled(m: Member, name: string, label: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text();
  return Number(new RegExp(`^${name}\\{[a-z]+="${label}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

async function keysUnder(prefix: string): Promise<string[]> {
  const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!).sort();
}

/** The recordings' objects (not checkpoints) in the bucket. */
async function recordingObjects(): Promise<string[]> {
  return (await keysUnder('')).filter((k) => !k.startsWith('checkpoints/') && k.endsWith('.cvr'));
}


/** The most frames (both tracks) a checkpoint of `recordingId` uploaded, as the owner logged it. */
function checkpointedFrames(m: Member, recordingId: string): number {
  return Math.max(0, ...m.proc.find('spool checkpoint uploaded').filter((l) => l['recordingId'] === recordingId).map((l) => l['frames'] as number));
}

/** A call on `owner` with 440 Hz on both tracks for 1 s, checkpointed whole, then 1 s more: its recording's ids. */
async function callCheckpointedThenMore(owner: Member, peer: Member): Promise<{ s: RawTwilioStream; id: string; sid: string; checkpointedMs: number }> {
  const base = await framesOn(owner);
  const s = await RawTwilioStream.open(asTestGateway(owner), account);
  s.start();
  s.media(0, 1000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(base + 50);
  await expect.poll(() => recordingOfCall(peer, s.callSid)).toMatchObject({ status: 'in-progress', ownerGateway: owner.id });
  const row = await recordingOfCall(peer, s.callSid);
  // A checkpoint holds the whole first second: 50 frames of each track.
  await expect.poll(() => checkpointedFrames(owner, row.id), { timeout: 10_000 }).toBeGreaterThanOrEqual(100);
  expect((await keysUnder(`checkpoints/${row.id}/`)).length).toBeGreaterThanOrEqual(2);
  s.media(1000, 2000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(base + 100);
  return { s, id: row.id as string, sid: row.recordingSid as string, checkpointedMs: (checkpointedFrames(owner, row.id) / 2) * 20 };
}

test('SIGKILL and the volume lost for good: a peer finishes the recording from its checkpoints, with the audio up to the last one, and deletes them', async () => {
  const victim = members[0]!;
  const peers = members.slice(1);
  const objectsBefore = (await recordingObjects()).length;
  const { s, id, sid, checkpointedMs } = await callCheckpointedThenMore(victim, peers[0]!);
  // What the last checkpoint before the kill held (1 s at least, at most what was sent).
  const lastCheckpointMs = (checkpointedFrames(victim, id) / 2) * 20;
  expect(lastCheckpointMs).toBeGreaterThanOrEqual(checkpointedMs);
  await victim.proc.kill('SIGKILL');
  await s.closed;
  await rm(victim.dataDir, { recursive: true, force: true });

  await expect.poll(async () => (await recordingOfCall(peers[0]!, s.callSid)).status, { timeout: 30_000 }).toBe('completed');
  const row = await recordingOfCall(peers[1]!, s.callSid);
  const taker = peers.find((m) => m.id === row.ownerGateway)!;
  expect(peers.map((m) => m.id)).toContain(row.ownerGateway);
  expect(taker.proc.find('interrupted recording of a dead gateway taken over from its spool checkpoints')).toEqual([
    expect.objectContaining({ recordingId: id, from: victim.id }),
  ]);
  expect(row.durationMs).toBeGreaterThanOrEqual(lastCheckpointMs);
  expect(row.durationMs).toBeLessThanOrEqual(2000);
  const res = await call(peers[0]!, 'GET', `/api/call-recordings/${sid}/media`);
  expect(res.status).toBe(200);
  const audio = decodeWav(new Uint8Array(await res.arrayBuffer())).channelSamples[0]!;
  expect(audio.length).toBe((row.durationMs / 1000) * RATE);
  expect(toneAmplitude(sliceMs(audio, RATE, 20, row.durationMs - 20), RATE, 440)).toBeGreaterThan(5000);
  // The checkpoint objects are gone; one recording object more in the bucket.
  await expect.poll(() => keysUnder(`checkpoints/${id}/`), { timeout: 10_000 }).toEqual([]);
  expect((await recordingObjects()).length).toBe(objectsBefore + 1);
  expect(await labelled(taker, 'callvault_recordings_taken_over_total', 'completed')).toBe(1);
}, 90_000);

test('a gateway back on its volume after a peer took its recording over does not finish it again', async () => {
  const victim = members[1]!;
  const peer = members[2]!;
  const objectsBefore = await recordingObjects();
  const { s, id } = await callCheckpointedThenMore(victim, peer);
  await victim.proc.kill('SIGKILL');
  await s.closed;
  // Restarted on its volume as soon as the peer has taken the recording over (compare-and-set on the owner).
  await expect
    .poll(() => peer.proc.find('interrupted recording of a dead gateway taken over from its spool checkpoints').filter((l) => l['recordingId'] === id).length, {
      timeout: 30_000,
    })
    .toBe(1);
  victim.proc = startGatewayProcess(victim.env);
  victim.port = await victim.proc.listening();
  await expect.poll(async () => (await recordingOfCall(victim, s.callSid)).status, { timeout: 30_000 }).toBe('completed');
  // The restarted gateway let go of its spool entry (taken over, or already completed by the peer) and recovered nothing.
  const discarded = [
    ...victim.proc.find('spool entry of a recording a peer took over discarded'),
    ...victim.proc.find('spool entry of a finished recording removed'),
  ].filter((l) => l['recordingId'] === id);
  expect(discarded).toHaveLength(1);
  expect(victim.proc.find('recording recovered')).toEqual([]);
  await expect.poll(() => peer.proc.find('recording recovered').filter((l) => l['recordingId'] === id).length).toBe(1);
  const row = await recordingOfCall(peer, s.callSid);
  expect(row.ownerGateway).toBe(peer.id);
  // One object for the recording, one completion.
  const objects = await recordingObjects();
  expect(objects.filter((k) => !objectsBefore.includes(k))).toHaveLength(1);
  await expect.poll(() => keysUnder(`checkpoints/${id}/`), { timeout: 10_000 }).toEqual([]);
}, 90_000);

test('a gateway back on its volume before the takeover period finishes its recording itself, whole, and deletes its checkpoints; no peer takes it', async () => {
  const victim = members[1]!;
  const peer = members[2]!;
  const { s, id } = await callCheckpointedThenMore(victim, peer);
  // Both seconds are durable in the victim's journal (group commit every 50 ms) before the kill.
  await expect.poll(() => victim.proc.find('spool checkpoint uploaded').filter((l) => l['recordingId'] === id && (l['frames'] as number) >= 200).length, { timeout: 10_000 }).toBeGreaterThan(0);
  await victim.proc.kill('SIGKILL');
  await s.closed;
  victim.proc = startGatewayProcess(victim.env);
  victim.port = await victim.proc.listening();
  await expect.poll(async () => (await recordingOfCall(peer, s.callSid)).status, { timeout: 30_000 }).toBe('completed');
  const row = await recordingOfCall(peer, s.callSid);
  expect(row).toMatchObject({ ownerGateway: victim.id, durationMs: 2000 });
  // Logged once the spool and the checkpoints are gone, just after the row completed.
  await expect.poll(() => victim.proc.find('recording recovered').filter((l) => l['recordingId'] === id).length).toBe(1);
  await expect.poll(() => keysUnder(`checkpoints/${id}/`), { timeout: 10_000 }).toEqual([]);
  // The takeover job runs (on one gateway) and took nothing: the recording was in progress again, then complete.
  await expect.poll(() => members.flatMap((m) => m.proc.find('fleet lease acquired')).some((l) => l['lease'] === 'checkpoint-takeover')).toBe(true);
  for (const m of members) {
    expect(m.proc.find('interrupted recording of a dead gateway taken over from its spool checkpoints').filter((l) => l['recordingId'] === id)).toEqual([]);
  }
}, 90_000);

test('the S3 requests of a checkpointed recording: one PUT per checkpoint plus the manifest, one DELETE per object at its end, no LIST, no GET', async () => {
  const owner = members[2]!;
  const before = {
    put: await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'put'),
    del: await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'delete'),
    list: await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'list'),
    get: await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'get'),
    uploaded: await labelled(owner, 'callvault_spool_checkpoints_total', 'uploaded'),
  };
  const base = await framesOn(owner);
  const s = await RawTwilioStream.open(asTestGateway(owner), account);
  s.start();
  // Five seconds of audio, a second at a time, each one checkpointed before the next is sent (as in a live call).
  for (let second = 0; second < 5; second++) {
    s.media(second * 1000, (second + 1) * 1000, { inbound: 440, outbound: 440 });
    await expect.poll(() => framesOn(owner)).toBe(base + 50 * (second + 1));
    await expect.poll(() => labelled(owner, 'callvault_spool_checkpoints_total', 'uploaded'), { timeout: 10_000 }).toBeGreaterThan(before.uploaded + second);
  }
  const row = await recordingOfCall(owner, s.callSid);
  await expect.poll(() => checkpointedFrames(owner, row.id), { timeout: 10_000 }).toBe(500);
  const parts = (await labelled(owner, 'callvault_spool_checkpoints_total', 'uploaded')) - before.uploaded;
  expect(parts).toBeGreaterThanOrEqual(5);
  expect(await keysUnder(`checkpoints/${row.id}/`)).toEqual([
    ...Array.from({ length: parts }, (_, i) => `checkpoints/${row.id}/${String(i).padStart(8, '0')}.journal-part`),
    `checkpoints/${row.id}/manifest.json`,
  ]);
  s.stop();
  await s.closed;
  await expect.poll(async () => (await recordingOfCall(owner, s.callSid)).status, { timeout: 20_000 }).toBe('completed');
  await expect.poll(() => keysUnder(`checkpoints/${row.id}/`), { timeout: 10_000 }).toEqual([]);
  expect({
    put: (await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'put')) - before.put,
    del: (await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'delete')) - before.del,
    list: (await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'list')) - before.list,
    get: (await labelled(owner, 'callvault_spool_checkpoint_requests_total', 'get')) - before.get,
  }).toEqual({ put: parts + 1, del: parts + 1, list: 0, get: 0 });
}, 90_000);

test('DELETE of a checkpointed recording in progress, sent to another gateway, removes its checkpoint objects too', async () => {
  const owner = members[2]!;
  const other = members[1]!;
  const base = await framesOn(owner);
  const s = await RawTwilioStream.open(asTestGateway(owner), account);
  s.start();
  s.media(0, 1000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(base + 50);
  await expect.poll(() => recordingOfCall(other, s.callSid)).toMatchObject({ status: 'in-progress', ownerGateway: owner.id });
  const { id, recordingSid } = await recordingOfCall(other, s.callSid);
  await expect.poll(() => checkpointedFrames(owner, id), { timeout: 10_000 }).toBe(100);
  expect(await keysUnder(`checkpoints/${id}/`)).toEqual([`checkpoints/${id}/00000000.journal-part`, `checkpoints/${id}/manifest.json`]);
  const res = await call(other, 'DELETE', `/api/call-recordings/${recordingSid}`);
  expect(res.status).toBe(204);
  await expect.poll(() => keysUnder(`checkpoints/${id}/`), { timeout: 10_000 }).toEqual([]);
  s.stop();
  await s.closed;
}, 60_000);

test('checkpoints failing while S3 is unreachable are logged and counted, the recording goes on, and the next checkpoint after S3 is back carries everything since', async () => {
  const fault = (proxy = await FaultProxy.start(s3Peer().endpoint));
  const dataDir = await mkdtemp(join(tmpdir(), 'callvault-ck-d-'));
  const env = envFor('ck-d', dataDir, { S3_ENDPOINT: fault.endpoint, S3_CONNECT_TIMEOUT_MS: '1000', S3_REQUEST_TIMEOUT_MS: '1000' });
  const owner: Member = { id: 'ck-d', dataDir, env, proc: startGatewayProcess(env), port: 0 };
  members.push(owner);
  owner.port = await owner.proc.listening();
  const s = await RawTwilioStream.open(asTestGateway(owner), account);
  s.start();
  s.media(0, 1000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(50);
  await expect.poll(() => recordingOfCall(owner, s.callSid)).toMatchObject({ status: 'in-progress' });
  const { id, recordingSid } = await recordingOfCall(owner, s.callSid);
  await expect.poll(() => checkpointedFrames(owner, id), { timeout: 10_000 }).toBe(100);

  await fault.setMode('refuse');
  s.media(1000, 2000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(100);
  await expect.poll(() => labelled(owner, 'callvault_spool_checkpoints_total', 'failed'), { timeout: 15_000 }).toBeGreaterThanOrEqual(1);
  expect(owner.proc.find('spool checkpoint failed').filter((l) => l['recordingId'] === id).length).toBeGreaterThanOrEqual(1);
  expect(checkpointedFrames(owner, id)).toBe(100);
  expect((await recordingOfCall(owner, s.callSid)).status).toBe('in-progress');

  await fault.setMode('forward');
  await expect.poll(() => checkpointedFrames(owner, id), { timeout: 15_000 }).toBe(200);
  s.stop();
  await s.closed;
  await expect.poll(async () => (await recordingOfCall(owner, s.callSid)).status, { timeout: 30_000 }).toBe('completed');
  expect((await recordingOfCall(owner, s.callSid)).durationMs).toBe(2000);
  const res = await call(owner, 'GET', `/api/call-recordings/${recordingSid}/media`);
  const audio = decodeWav(new Uint8Array(await res.arrayBuffer())).channelSamples[0]!;
  expect(toneAmplitude(sliceMs(audio, RATE, 20, 1980), RATE, 440)).toBeGreaterThan(5000);
  await expect.poll(() => keysUnder(`checkpoints/${id}/`), { timeout: 10_000 }).toEqual([]);
}, 90_000);

test('the dead gateway back on its volume while the peer that took its recording over is still finishing it: it discards its spool entry, and the peer completes it once', async () => {
  const victim = members[1]!;
  const paused = members[2]!;
  const taker = members.find((m) => m.id === 'ck-d')!;
  const fault = proxy!;
  const objectsBefore = await recordingObjects();
  const { s, id } = await callCheckpointedThenMore(victim, taker);
  // The S3-proxied gateway is the only live peer (the other is stopped), and it cannot reach S3 for now: it takes
  // the recording over (the compare-and-set is PostgreSQL's) but cannot download it yet.
  paused.proc.child.kill('SIGSTOP');
  try {
    await fault.setMode('refuse');
    await victim.proc.kill('SIGKILL');
    await s.closed;
    await expect
      .poll(() => taker.proc.find('could not finish a taken-over recording; retried at the next run').filter((l) => l['recordingId'] === id).length, { timeout: 30_000 })
      .toBeGreaterThan(0);
    expect(await recordingOfCall(taker, s.callSid)).toMatchObject({ status: 'interrupted', ownerGateway: taker.id });

    // Back on its volume: the recording is a live peer's now, so its spool entry goes.
    victim.proc = startGatewayProcess(victim.env);
    victim.port = await victim.proc.listening();
    expect(victim.proc.find('spool entry of a recording a peer took over discarded')).toEqual([
      expect.objectContaining({ recordingId: id, ownerGateway: taker.id, gatewayId: victim.id }),
    ]);
    expect(victim.proc.find('recording recovered')).toEqual([]);
    expect(await recordingOfCall(victim, s.callSid)).toMatchObject({ status: 'interrupted', ownerGateway: taker.id });

    // S3 is back: the taker finishes it, once, into one object.
    await fault.setMode('forward');
    await expect.poll(async () => (await recordingOfCall(victim, s.callSid)).status, { timeout: 30_000 }).toBe('completed');
    const row = await recordingOfCall(victim, s.callSid);
    expect(row.ownerGateway).toBe(taker.id);
    expect(row.durationMs).toBeGreaterThanOrEqual(1000);
    expect(row.durationMs).toBeLessThanOrEqual(2000);
    await expect.poll(() => taker.proc.find('recording recovered').filter((l) => l['recordingId'] === id).length).toBe(1);
    expect(victim.proc.find('recording recovered')).toEqual([]);
    expect((await recordingObjects()).filter((k) => !objectsBefore.includes(k))).toHaveLength(1);
    await expect.poll(() => keysUnder(`checkpoints/${id}/`), { timeout: 10_000 }).toEqual([]);
  } finally {
    paused.proc.child.kill('SIGCONT');
    await fault.setMode('forward');
  }
}, 120_000);
