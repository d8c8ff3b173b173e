#!/usr/bin/env node
// Durable journal flushes per second for N live calls, both ways, alternating rounds in the same run:
//   - alone: each call's journal opened O_DSYNC, one synchronous write per call per tick (the design before);
//   - commit log: the journals written buffered and every call's record of a tick in one O_DSYNC write to the
//     gateway's commit log (src/storage/commit-log.ts), as the gateway does now.
// Each tick, every call journals 100 ms of a two-track 8 kHz call (10 frames of 160 bytes) and flushes; the next
// tick starts when every flush of this one is durable, so the figure is the ticks a second the disk sustains
// (the gateway ticks every 50 ms: 20 a second is the least it needs). CPU is the whole process, user + system.
//
//   npm run build && node native-bench/journal.mjs [--calls 200] [--ticks 40] [--rounds 5]
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CommitLog, JournalWriter } from '../dist/storage/index.js';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '200' }, ticks: { type: 'string', default: '40' }, rounds: { type: 'string', default: '5' } } });
const CALLS = Number(values.calls);
const TICKS = Number(values.ticks);
const ROUNDS = Number(values.rounds);
const payload = new Uint8Array(randomBytes(160));

async function round(withLog) {
  const dir = await mkdtemp(join(tmpdir(), 'cv-journal-bench-'));
  try {
    const log = withLog ? await CommitLog.open(join(dir, 'commit-log')) : undefined;
    const journals = await Promise.all(
      Array.from({ length: CALLS }, () => {
        const id = randomUUID();
        return JournalWriter.create({ path: join(dir, `${id}.journal`), recordingId: id, dataKey: randomBytes(32), ...(log ? { commitLog: log } : {}) });
      }),
    );
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let tick = 0; tick < TICKS; tick++) {
      for (const journal of journals) {
        for (let f = 0; f < 10; f++) journal.add({ trackId: f % 2 ? 'outbound' : 'inbound', role: f % 2 ? 'agent' : 'caller', encoding: 'mulaw', sampleRate: 8000, position: (tick * 5 + (f >> 1)) * 160, data: payload });
      }
      await Promise.all(journals.map((journal) => journal.flush()));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    await Promise.all(journals.map((journal) => journal.close()));
    await log?.close();
    return { ticksPerSecond: TICKS / seconds, cpuUsPerFlush: (cpu.user + cpu.system) / (TICKS * CALLS), syncWrites: log ? log.writes : TICKS * CALLS };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = { alone: [], log: [] };
for (let r = 0; r < ROUNDS; r++) {
  results.alone.push(await round(false));
  results.log.push(await round(true));
}
const summary = (rs) => ({
  ticksPerSecond: Number(median(rs.map((r) => r.ticksPerSecond)).toFixed(1)),
  cpuUsPerFlush: Number(median(rs.map((r) => r.cpuUsPerFlush)).toFixed(1)),
  syncWritesPerRound: median(rs.map((r) => r.syncWrites)),
});
const alone = summary(results.alone);
const log = summary(results.log);
process.stdout.write(
  `${JSON.stringify({ calls: CALLS, ticks: TICKS, rounds: ROUNDS, alone, commitLog: log, ticksRatio: Number((log.ticksPerSecond / alone.ticksPerSecond).toFixed(1)), cpuRatio: Number((log.cpuUsPerFlush / alone.cpuUsPerFlush).toFixed(2)) }, null, 2)}\n`,
);
