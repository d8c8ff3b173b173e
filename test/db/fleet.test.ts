/**
 * The fleet's rows on a real PostgreSQL: heartbeats judged alive or dead on the database's clock, leases that
 * one gateway holds at a time and that pass on expiry or release, and the sweep that marks only a dead
 * gateway's live recordings interrupted (which recovery, and a late heartbeat, take back).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CreateRecordingInput } from '../../dist/db/index.js';
import { openTestDatabase, type TestDatabase } from './support.js';

let t: TestDatabase;

beforeAll(async () => {
  t = await openTestDatabase();
  await t.db.organisations.ensure('acme');
});

afterAll(async () => {
  await t?.dispose();
});

function recordingInput(ownerGateway: string): CreateRecordingInput {
  return {
    orgId: 'acme',
    callId: null,
    source: 'gateway',
    channels: 1,
    sampleRate: 16000,
    format: 'cvr1',
    mediaType: 'application/vnd.callvault.recording',
    bucket: 'b',
    objectKey: `k/${Math.random()}`,
    keyMode: 'client',
    startedAt: new Date(),
    ownerGateway,
  };
}

const heartbeat = (id: string) => t.db.fleet.heartbeat({ id, version: '1.2.3', startedAt: new Date('2026-01-01T00:00:00Z'), activeCalls: 2, internalUrl: `http://${id}:8080` });

/** Ages a gateway's heartbeat by `ms` (as if it had stopped beating that long ago). */
const age = (id: string, ms: number) => t.sql(`UPDATE gateways SET last_heartbeat = now() - make_interval(secs => $2::float8 / 1000) WHERE id = $1`, [id, ms]);

describe('heartbeats', () => {
  test('a gateway is alive while its heartbeat is younger than the timeout, dead after', async () => {
    await heartbeat('hb-1');
    await heartbeat('hb-2');
    await age('hb-2', 10_000);
    const rows = (await t.db.fleet.list(5_000)).filter((g) => g.id.startsWith('hb-'));
    expect(rows.map((g) => [g.id, g.alive])).toEqual([
      ['hb-1', true],
      ['hb-2', false],
    ]);
    expect(rows[0]).toMatchObject({ version: '1.2.3', activeCalls: 2, internalUrl: 'http://hb-1:8080' });
    expect(rows[1]!.heartbeatAgeMs).toBeGreaterThanOrEqual(10_000);
    // A new heartbeat brings it back.
    await heartbeat('hb-2');
    expect((await t.db.fleet.get('hb-2', 5_000))?.alive).toBe(true);
    expect(await t.db.fleet.get('never', 5_000)).toBeNull();
  });
});

describe('leases', () => {
  test('one holder at a time; renewal by the holder; a peer takes it once it expires, or at once when released', async () => {
    expect((await t.db.fleet.acquireLease('job', 'gw-1', 60_000)).holder).toBe('gw-1');
    expect((await t.db.fleet.acquireLease('job', 'gw-2', 60_000)).holder).toBe('gw-1');
    const renewed = await t.db.fleet.acquireLease('job', 'gw-1', 60_000);
    expect(renewed.holder).toBe('gw-1');

    await t.sql(`UPDATE fleet_leases SET expires_at = now() - interval '1 second' WHERE name = 'job'`);
    expect((await t.db.fleet.acquireLease('job', 'gw-2', 60_000)).holder).toBe('gw-2');
    expect((await t.db.fleet.acquireLease('job', 'gw-1', 60_000)).holder).toBe('gw-2');

    // Only the holder's release counts.
    await t.db.fleet.releaseLease('job', 'gw-1');
    expect((await t.db.fleet.acquireLease('job', 'gw-3', 60_000)).holder).toBe('gw-2');
    await t.db.fleet.releaseLease('job', 'gw-2');
    expect((await t.db.fleet.acquireLease('job', 'gw-3', 60_000)).holder).toBe('gw-3');
  });

  test('gateways racing for a free lease: exactly one wins', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => t.db.fleet.acquireLease('race', `racer-${i}`, 60_000)));
    const holders = new Set(results.map((r) => r.holder));
    expect(holders.size).toBe(1);
    expect((await t.db.fleet.leases()).find((l) => l.name === 'race')?.holder).toBe([...holders][0]);
  });
});

describe('interrupted recordings', () => {
  test('only a dead owner’s live recordings are marked; recovery and a late heartbeat take them back', async () => {
    await heartbeat('live-gw');
    await heartbeat('dead-gw');
    const ofLive = await t.db.recordings.create(recordingInput('live-gw'));
    const ofDead = await t.db.recordings.create(recordingInput('dead-gw'));
    const ofDeadToo = await t.db.recordings.create(recordingInput('dead-gw'));
    const finished = await t.db.recordings.create(recordingInput('dead-gw'));
    await t.db.recordings.complete(finished.id, { durationMs: 1, sizeBytes: 1, endedAt: new Date() });
    await age('dead-gw', 60_000);

    const marked = await t.db.fleet.markInterrupted(30_000);
    expect(marked.map((m) => m.id).sort()).toEqual([ofDead.id, ofDeadToo.id].sort());
    expect(marked.every((m) => m.ownerGateway === 'dead-gw')).toBe(true);
    expect(await t.db.fleet.markInterrupted(30_000)).toEqual([]);
    expect(await t.db.fleet.countInterrupted()).toBe(2);
    expect((await t.db.recordings.get('acme', ofLive.id))?.status).toBe('in_progress');
    expect((await t.db.recordings.get('acme', finished.id))?.status).toBe('completed');
    expect((await t.db.recordings.list('acme', { status: 'interrupted', page: 0, limit: 10 })).total).toBe(2);

    // A replacement on the dead gateway's volume recovers one: it owns it now, in progress again, then complete.
    expect(await t.db.recordings.claimForRecovery(ofDead.id, 'replacement-gw', 30_000)).toBe(true);
    expect(await t.db.recordings.get('acme', ofDead.id)).toMatchObject({ status: 'in_progress', ownerGateway: 'replacement-gw' });
    await t.db.recordings.markUploading(ofDead.id);
    await t.db.recordings.completeRecovered(ofDead.id, { durationMs: 10, sizeBytes: 10, endedAt: new Date() });
    expect((await t.db.recordings.get('acme', ofDead.id))?.status).toBe('completed');

    // The "dead" one was only late: its next heartbeat takes back the recording it still records live.
    await heartbeat('dead-gw');
    expect(await t.db.recordings.resumeLive('dead-gw', [ofDeadToo.id, ofLive.id])).toBe(1);
    expect((await t.db.recordings.get('acme', ofDeadToo.id))?.status).toBe('in_progress');
    expect(await t.db.fleet.countInterrupted()).toBe(0);
  });
});

describe('checkpoint takeover', () => {
  test('a dead owner’s checkpointed interrupted recording: offered after the takeover period only, taken by exactly one peer, never reclaimed by the dead owner from its volume', async () => {
    await heartbeat('ck-dead');
    await heartbeat('ck-peer-1');
    await heartbeat('ck-peer-2');
    const checkpointed = await t.db.recordings.create(recordingInput('ck-dead'));
    const without = await t.db.recordings.create(recordingInput('ck-dead'));
    await t.db.recordings.markCheckpointed(checkpointed.id);
    const firstMark = (await t.db.recordings.get('acme', checkpointed.id))!.checkpointedAt;
    expect(firstMark).toBeInstanceOf(Date);
    // Noted once: a later checkpoint does not move it.
    await t.db.recordings.markCheckpointed(checkpointed.id);
    expect((await t.db.recordings.get('acme', checkpointed.id))!.checkpointedAt).toEqual(firstMark);
    expect((await t.db.recordings.get('acme', without.id))!.checkpointedAt).toBeNull();

    await age('ck-dead', 10_000);
    await t.db.fleet.markInterrupted(5_000);
    const offered = async (takeoverAfterMs: number) =>
      (await t.db.recordings.checkpointedOrphans('ck-peer-1', takeoverAfterMs, 100)).filter((o) => [checkpointed.id, without.id].includes(o.id));
    // Dead for 10 s: not yet past a 60 s takeover period; past a 5 s one, and only the one with checkpoints.
    expect(await offered(60_000)).toEqual([]);
    expect(await offered(5_000)).toEqual([{ id: checkpointed.id, orgId: 'acme', ownerGateway: 'ck-dead' }]);

    // Two peers race: the compare-and-set on the owner lets exactly one through.
    const [one, two] = await Promise.all([
      t.db.recordings.takeOver(checkpointed.id, 'ck-dead', 'ck-peer-1'),
      t.db.recordings.takeOver(checkpointed.id, 'ck-dead', 'ck-peer-2'),
    ]);
    expect([one, two].sort()).toEqual([false, true]);
    const taker = one ? 'ck-peer-1' : 'ck-peer-2';
    expect(await t.db.recordings.get('acme', checkpointed.id)).toMatchObject({ ownerGateway: taker, status: 'interrupted' });
    // Still offered to the taker (a takeover cut short is tried again), no longer to the other peer.
    expect((await t.db.recordings.checkpointedOrphans(taker, 5_000, 100)).map((o) => o.id)).toContain(checkpointed.id);
    const other = taker === 'ck-peer-1' ? 'ck-peer-2' : 'ck-peer-1';
    expect((await t.db.recordings.checkpointedOrphans(other, 5_000, 100)).map((o) => o.id)).not.toContain(checkpointed.id);

    // The dead owner back on its volume (alive again) cannot claim it from a live peer; the peer's own recovery can.
    await heartbeat('ck-dead');
    expect(await t.db.recordings.claimForRecovery(checkpointed.id, 'ck-dead', 5_000)).toBe(false);
    expect(await t.db.recordings.get('acme', checkpointed.id)).toMatchObject({ ownerGateway: taker, status: 'interrupted' });
    expect(await t.db.recordings.claimForRecovery(checkpointed.id, taker, 5_000)).toBe(true);
    expect(await t.db.recordings.get('acme', checkpointed.id)).toMatchObject({ ownerGateway: taker, status: 'in_progress' });
    // Not interrupted any more: a late compare-and-set fails.
    expect(await t.db.recordings.takeOver(checkpointed.id, taker, 'ck-dead')).toBe(false);
    // Once the taker is dead in turn, a gateway holding the recording's spool may claim it again.
    await age(taker, 10_000);
    expect(await t.db.recordings.claimForRecovery(checkpointed.id, 'ck-dead', 5_000)).toBe(true);
    // The owner itself always may.
    expect(await t.db.recordings.claimForRecovery(without.id, 'ck-dead', 5_000)).toBe(true);
  });
});
