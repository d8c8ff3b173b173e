/**
 * A fleet of three real gateways (`node dist/main.js`) on one PostgreSQL database and one MinIO bucket. Calls
 * are spread over them and every control request goes to a gateway other than the one holding the call: the
 * owner answers it (pause really silences, stop really stops, start and DELETE act on the owner's stream,
 * `?live=1` streams from the owner's spool). Then the gateway holding the Twilio poller's lease is killed with
 * SIGKILL mid-recording: the fleet view shows it dead, a peer marks its recording interrupted, control of it
 * answers 503 OWNER_UNAVAILABLE, the poller moves to a live gateway, and the killed gateway, restarted on its
 * volume, recovers the recording to completed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { commitLogBytes } from '../../dist/storage/index.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { rms, sliceMs, toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, testAccount } from '../support/gateway.js';
import { freshBucket, freshDatabase } from '../support/peers.js';
import { gatewayEnv, startGatewayProcess } from '../support/process.js';
import { asTestGateway, framesOn, memberCall, type Member } from '../support/fleet.js';
import { RawTwilioStream } from '../support/twilio.js';
import { decodeWav } from '../api/support.js';
import { FakeTwilio } from '../manage/support.js';

const RATE = 16000;
const IDS = ['gw-a', 'gw-b', 'gw-c'] as const;
const account = testAccount('acme');
const apiKey = `acme-fleet-${randomBytes(12).toString('hex')}`;
const masterKey = randomBytes(32).toString('base64');


let db: Awaited<ReturnType<typeof freshDatabase>>;
let fake: FakeTwilio;
const members: Member[] = [];

function envFor(id: string, dataDir: string, bucket: string): Record<string, string> {
  return gatewayEnv(
    { dataDir, databaseUrl: db.url, bucket, publicUrl: PUBLIC_URL },
    {
      GATEWAY_ID: id,
      HEARTBEAT_INTERVAL_SECONDS: '0.5',
      GATEWAY_DEAD_AFTER_SECONDS: '3',
      CONTROL_FORWARD_TIMEOUT_SECONDS: '5',
      MASTER_KEY: masterKey,
      MASTER_KEY_ID: 'fleet-test',
      TWILIO_ACCOUNTS: `acme:${account.accountSid}:${account.authToken}`,
      API_KEYS: `acme:${apiKey}`,
      TWILIO_API_BASE_URL: fake.baseUrl,
      TWILIO_RECORDING_POLLING: 'true',
      TWILIO_RECORDING_POLL_INTERVAL_MINUTES: '0.01',
      CONTROL_RATE_LIMIT_PER_MINUTE: '1000',
    },
  );
}

beforeAll(async () => {
  db = await freshDatabase();
  fake = await FakeTwilio.start([account]);
  const bucket = await freshBucket();
  for (const id of IDS) {
    const dataDir = await mkdtemp(join(tmpdir(), `callvault-${id}-`));
    const env = envFor(id, dataDir, bucket);
    members.push({ id, dataDir, env, proc: startGatewayProcess(env), port: 0 });
  }
  for (const m of members) m.port = await m.proc.listening();
}, 120_000);

afterAll(async () => {
  for (const m of members) await m.proc.kill('SIGKILL');
  await fake?.close();
  await db?.drop();
  for (const m of members) await rm(m.dataDir, { recursive: true, force: true });
});

function call(m: Member, method: string, path: string, body?: unknown): Promise<Response> {
  return memberCall(m, apiKey, method, path, body);
}

async function jsonOf(res: Response, status: number): Promise<any> {
  const text = await res.text();
  expect({ status: res.status, text }).toMatchObject({ status });
  return JSON.parse(text);
}



async function metric(m: Member, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

async function recordingOfCall(m: Member, callSid: string): Promise<any> {
  const list = await jsonOf(await call(m, 'GET', `/api/call-recordings?callSid=${callSid}`), 200);
  return list.recordings[0];
}

async function fleetView(m: Member): Promise<any> {
  return jsonOf(await call(m, 'GET', '/api/gateways'), 200);
}

async function audioOf(m: Member, recordingSid: string): Promise<Int16Array> {
  const res = await call(m, 'GET', `/api/call-recordings/${recordingSid}/media`);
  expect(res.status).toBe(200);
  return decodeWav(new Uint8Array(await res.arrayBuffer())).channelSamples[0]!;
}

function amplitude(samples: Int16Array, fromMs: number, toMs: number, hz: number): number {
  return toneAmplitude(sliceMs(samples, RATE, fromMs, toMs), RATE, hz);
}

test('the fleet view lists the three gateways, alive, and each fleet-wide job runs on exactly one of them', async () => {
  await expect
    .poll(async () => {
      const view = await fleetView(members[1]!);
      return { ids: view.gateways.map((g: any) => g.id), alive: view.gateways.map((g: any) => g.alive), leases: view.leases.map((l: any) => l.name) };
    })
    .toEqual({ ids: [...IDS], alive: [true, true, true], leases: ['fleet-reaper', 'retention-sweeper', 'twilio-poller'] });
  const view = await fleetView(members[0]!);
  expect(view.self).toBe('gw-a');
  for (const g of view.gateways) {
    expect(g).toMatchObject({ version: '0.1.0', activeCalls: 0, internalUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });
    expect(g.heartbeatAgeMs).toBeLessThan(3000);
  }
  // The poller runs on its lease holder only.
  const holder = view.leases.find((l: any) => l.name === 'twilio-poller').holder as string;
  await expect.poll(() => members.find((m) => m.id === holder)!.proc.find('twilio recording poll started').length).toBeGreaterThan(1);
  for (const m of members) if (m.id !== holder) expect(m.proc.find('twilio recording poll started')).toEqual([]);
});

test.each([
  [0, 'recordingSid'],
  [1, 'callSid'],
  [2, 'recordingSid'],
] as const)('a call on gateway %i controlled through another gateway: live audio, pause silences, resume, stop by %s stops', async (index, stopBy) => {
  const owner = members[index]!;
  const other = members[(index + 1) % 3]!;
  const third = members[(index + 2) % 3]!;
  const base = await framesOn(owner);
  const s = await RawTwilioStream.open(asTestGateway(owner), account);
  s.start();
  s.media(0, 1000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(base + 50);

  await expect.poll(() => recordingOfCall(third, s.callSid)).toMatchObject({ status: 'in-progress', ownerGateway: owner.id });
  const listed = await recordingOfCall(third, s.callSid);
  const sid = listed.recordingSid as string;

  const paused = await jsonOf(await call(other, 'POST', `/api/call-recordings/${sid}/pause`, { behavior: 'silence' }), 200);
  expect(paused).toMatchObject({ paused: true, pause: { fromMediaMs: 1000 } });
  // A card number read out while paused.
  s.media(1000, 2000, { inbound: 660, outbound: 660 });
  await expect.poll(() => framesOn(owner)).toBe(base + 100);
  expect(await jsonOf(await call(third, 'POST', `/api/call-recordings/${sid}/resume`), 200)).toMatchObject({ paused: false });
  s.media(2000, 3000, { inbound: 880, outbound: 880 });
  await expect.poll(() => framesOn(owner)).toBe(base + 150);

  // ?live=1 through a peer streams the owner's spool (whole sealed segments: 512 ms each at 16 kHz mono; the
  // pipeline runs behind media sent faster than real time, so only the first is asked for).
  let live: Int16Array = new Int16Array(0);
  await expect
    .poll(async () => {
      const res = await call(other, 'GET', `/calls/${s.callSid}/recording?live=1`);
      if (res.status !== 200) return `${res.status} ${await res.text()}`;
      expect(res.headers.get('x-callvault-forwarded-by')).toBe(owner.id);
      live = decodeWav(new Uint8Array(await res.arrayBuffer())).channelSamples[0]!;
      return live.length >= 8192 ? 'some' : 'none';
    }, { timeout: 10_000 })
    .toBe('some');
  expect(amplitude(live, 20, 500, 440)).toBeGreaterThan(5000);


  const stopped = await jsonOf(await call(other, 'POST', '/api/call-recordings/stop', stopBy === 'callSid' ? { callSid: s.callSid } : { recordingSid: sid }), 200);
  expect(stopped.stopped).toEqual([expect.objectContaining({ recordingSid: sid, durationMs: 3000 })]);
  // Audio after the stop is recorded nowhere.
  s.media(3000, 4000, { inbound: 1200, outbound: 1200 });
  s.stop();
  await s.closed;

  await expect.poll(async () => (await recordingOfCall(third, s.callSid))?.status, { timeout: 20_000 }).toBe('completed');
  const row = await recordingOfCall(third, s.callSid);
  expect(row).toMatchObject({ durationMs: 3000, ownerGateway: owner.id });
  expect(row.metadata.pauses).toEqual([expect.objectContaining({ behavior: 'silence', fromMediaMs: 1000, toMediaMs: 2000 })]);
  const audio = await audioOf(other, sid);
  expect(audio.length).toBe(3 * RATE);
  expect(amplitude(audio, 20, 980, 440)).toBeGreaterThan(5000);
  expect(rms(sliceMs(audio, RATE, 1005, 1995))).toBe(0);
  expect(amplitude(audio, 2020, 2980, 880)).toBeGreaterThan(5000);
  expect(amplitude(audio, 0, 3000, 660)).toBeLessThan(30);
  expect(amplitude(audio, 0, 3000, 1200)).toBeLessThan(30);
}, 60_000);

test('DELETE of a recording in progress on another gateway: the owner stops and removes it', async () => {
  const owner = members[2]!;
  const other = members[0]!;
  const base = await framesOn(owner);
  const s = await RawTwilioStream.open(asTestGateway(owner), account);
  s.start();
  s.media(0, 600, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(owner)).toBe(base + 30);
  await expect.poll(() => recordingOfCall(members[1]!, s.callSid)).toMatchObject({ status: 'in-progress', ownerGateway: owner.id });
  const listed = await recordingOfCall(members[1]!, s.callSid);
  const res = await call(other, 'DELETE', `/api/call-recordings/${listed.recordingSid}`);
  expect(res.status).toBe(204);
  expect(res.headers.get('x-callvault-forwarded-by')).toBe(owner.id);
  expect((await call(members[1]!, 'GET', `/api/call-recordings/${listed.recordingSid}`)).status).toBe(404);
  s.stop();
  await s.closed;
}, 60_000);

test('SIGKILL of the poller’s gateway mid-recording: dead in the fleet view, its recording interrupted, control 503, the poller moves; back on its volume it recovers', async () => {
  const before = await fleetView(members[0]!);
  const victimId = before.leases.find((l: any) => l.name === 'twilio-poller').holder as string;
  const victim = members.find((m) => m.id === victimId)!;
  const peers = members.filter((m) => m !== victim);
  const base = await framesOn(victim);

  // A call on the victim whose recording is started through a peer.
  const s = await RawTwilioStream.open(asTestGateway(victim), account);
  s.start({ recording: JSON.stringify({ enabled: false }) });
  s.media(0, 1000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(victim)).toBe(base + 50);
  // The call is active (404 until then) once the victim has set up its stream.
  let started: any;
  await expect
    .poll(async () => {
      const res = await call(peers[0]!, 'POST', '/api/call-recordings/start', { callSid: s.callSid });
      if (res.status === 201) started = await res.json();
      return res.status;
    })
    .toBe(201);
  expect(started.recording).toMatchObject({ status: 'in-progress', callSid: s.callSid });
  const sid = started.recording.recordingSid as string;
  expect(await recordingOfCall(peers[1]!, s.callSid)).toMatchObject({ recordingSid: sid, ownerGateway: victimId });
  const logged = await commitLogBytes(join(victim.dataDir, 'commit-log'));
  s.media(1000, 2000, { inbound: 440, outbound: 440 });
  await expect.poll(() => framesOn(victim)).toBe(base + 100);
  // The burst is durable once the journals' group commit (every 50 ms) wrote it to the commit log: a second of both tracks.
  await expect.poll(async () => (await commitLogBytes(join(victim.dataDir, 'commit-log'))) - logged, { timeout: 10_000 }).toBeGreaterThanOrEqual(2 * 50 * 160);

  await victim.proc.kill('SIGKILL');
  await s.closed;
  const killedAt = Date.now();

  // Control of its recording: a clear 503 with a stable code, naming the owner.
  const refused = await jsonOf(await call(peers[0]!, 'POST', `/api/call-recordings/${sid}/pause`, {}), 503);
  expect(refused.error).toMatchObject({ code: 'OWNER_UNAVAILABLE', details: { ownerGateway: victimId } });

  await expect
    .poll(async () => (await fleetView(peers[1]!)).gateways.map((g: any) => [g.id, g.alive]), { timeout: 15_000 })
    .toEqual(IDS.map((id) => [id, id !== victimId]));
  await expect.poll(async () => (await recordingOfCall(peers[0]!, s.callSid)).status, { timeout: 15_000 }).toBe('interrupted');
  expect(await recordingOfCall(peers[1]!, s.callSid)).toMatchObject({ ownerGateway: victimId, status: 'interrupted' });
  await expect.poll(() => metric(peers[0]!, 'callvault_fleet_interrupted_recordings'), { timeout: 10_000 }).toBe(1);
  expect(await metric(peers[0]!, 'callvault_recordings_marked_interrupted_total') + (await metric(peers[1]!, 'callvault_recordings_marked_interrupted_total'))).toBe(1);

  // The poller's lease moves to a live gateway, which runs it from then on.
  await expect
    .poll(async () => (await fleetView(peers[0]!)).leases.find((l: any) => l.name === 'twilio-poller').holder, { timeout: 15_000 })
    .not.toBe(victimId);
  const holderId = (await fleetView(peers[0]!)).leases.find((l: any) => l.name === 'twilio-poller').holder as string;
  expect(peers.map((m) => m.id)).toContain(holderId);
  const holder = members.find((m) => m.id === holderId)!;
  await expect
    .poll(() => holder.proc.find('twilio recording poll started').filter((l) => (l['time'] as number) > killedAt).length, { timeout: 15_000 })
    .toBeGreaterThan(0);

  // Back on its volume, under its id: it recovers the recording, which completes with the audio it had.
  victim.proc = startGatewayProcess(victim.env);
  victim.port = await victim.proc.listening();
  await expect.poll(async () => (await recordingOfCall(peers[0]!, s.callSid)).status, { timeout: 30_000 }).toBe('completed');
  const row = await recordingOfCall(peers[1]!, s.callSid);
  expect(row.ownerGateway).toBe(victimId);
  expect(row.durationMs).toBe(1000);
  const audio = await audioOf(peers[0]!, sid);
  expect(amplitude(audio, 20, row.durationMs - 20, 440)).toBeGreaterThan(5000);
  await expect.poll(async () => (await fleetView(peers[0]!)).gateways.find((g: any) => g.id === victimId).alive).toBe(true);
  await expect.poll(() => metric(peers[1]!, 'callvault_fleet_interrupted_recordings'), { timeout: 10_000 }).toBe(0);
}, 120_000);

test('SIGTERM of the poller’s gateway: it releases its leases, so a peer takes the poller before the lease would have expired', async () => {
  const pollerLease = async (m: Member) => (await fleetView(m)).leases.find((l: any) => l.name === 'twilio-poller') as { holder: string; acquiredAt: string; expiresAt: string } | undefined;
  const before = (await pollerLease(members[0]!))!;
  const holder = members.find((m) => m.id === before.holder)!;
  const asker = members.find((m) => m !== holder)!;
  expect(await holder.proc.kill('SIGTERM')).toBe(0);
  expect(holder.proc.find('fleet lease released').map((l) => l['lease'])).toContain('twilio-poller');
  await expect.poll(async () => (await pollerLease(asker))?.holder ?? 'none', { timeout: 5_000, interval: 50 }).not.toMatch(new RegExp(`^(none|${before.holder})$`));
  // Taken (on the database's clock) before the lease the stopped gateway held then would have expired: only a release allows that.
  const after = (await pollerLease(asker))!;
  expect(new Date(after.acquiredAt).getTime()).toBeLessThan(new Date(before.expiresAt).getTime());
}, 60_000);
