/**
 * The journals' commit log: every journal flushed in one turn of the event loop is made durable by one
 * synchronous write, and what a power loss takes from the journals' buffered writes comes back from the log
 * at the next start. A power loss is simulated by cutting the journal files back (what only the page cache
 * held is gone), as the kernel would have left them.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, readdir, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { InputFrame } from '../../dist/pipeline/index.js';
import { CommitLog, commitLogBytes, JournalWriter, readJournal, repairJournals } from '../../dist/storage/index.js';

let dir: string;
let logDir: string;
/** Journals and logs a test opened: closed after it (a test that simulates a power loss leaves them open). */
let opened: Array<{ close(): Promise<void> }>;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cv-commit-log-'));
  logDir = join(dir, 'commit-log');
  opened = [];
});
afterEach(async () => {
  for (const handle of opened.reverse()) await handle.close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

async function openLog(path: string, segmentBytes?: number): Promise<CommitLog> {
  const log = await CommitLog.open(path, segmentBytes === undefined ? {} : { segmentBytes });
  opened.push(log);
  return log;
}

const journalPath = (id: string) => join(dir, `${id}.journal`);

function frame(track: 'inbound' | 'outbound', n: number): InputFrame {
  return { trackId: track, role: track === 'inbound' ? 'caller' : 'agent', encoding: 'mulaw', sampleRate: 8000, position: n * 160, data: new Uint8Array(randomBytes(160)) };
}

interface Call {
  id: string;
  key: Buffer;
  journal: JournalWriter;
  sent: InputFrame[];
}

async function openCalls(log: CommitLog, count: number): Promise<Call[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const id = randomUUID();
      const key = randomBytes(32);
      const journal = await JournalWriter.create({ path: journalPath(id), recordingId: id, dataKey: key, commitLog: log });
      opened.push(journal);
      return { id, key, journal, sent: [] };
    }),
  );
}

/** One gateway tick: every call adds its frames, then every journal flushes. */
async function tick(calls: Call[], n: number): Promise<void> {
  for (const call of calls) {
    for (const track of ['inbound', 'outbound'] as const) {
      const f = frame(track, n);
      call.journal.add(f);
      call.sent.push(f);
    }
  }
  await Promise.all(calls.map((call) => call.journal.flush()));
}

test('the journals flushed in one tick are made durable by one write to the log', async () => {
  const log = await openLog(logDir);
  const calls = await openCalls(log, 50);
  for (let n = 0; n < 10; n++) await tick(calls, n);
  expect(log.entries).toBe(500);
  // One write per tick (the first tick's journals may straddle two turns at most).
  expect(log.writes).toBeLessThanOrEqual(12);
  expect(log.writes).toBeGreaterThanOrEqual(10);
  for (const call of calls) await call.journal.close();
  await log.close();
  for (const call of calls) expect((await readJournal(journalPath(call.id), call.id, call.key)).frames).toEqual(call.sent);
  // A clean close leaves no segment: every journal was synchronised first.
  expect(await readdir(logDir)).toEqual([]);
});

describe('after a power loss, the journals get back from the log what they lost', () => {
  test.each([
    { lost: 'the whole file (only the page cache held it)', cut: async (path: string) => truncate(path, 0) },
    { lost: 'the tail, cut in the middle of a record', cut: async (path: string) => truncate(path, (await stat(path)).size - 100) },
    {
      lost: 'the tail, as zeros where the size got to disk and the data did not',
      cut: async (path: string) => {
        const size = (await stat(path)).size;
        await truncate(path, Math.floor(size / 2));
        await appendFile(path, Buffer.alloc(size - Math.floor(size / 2)));
      },
    },
  ])('$lost', async ({ cut }) => {
    const log = await openLog(logDir);
    const calls = await openCalls(log, 5);
    for (let n = 0; n < 20; n++) await tick(calls, n);
    // The power goes: the log's synchronous writes survive, the journals' buffered ones may not.
    for (const call of calls) await cut(journalPath(call.id));
    const report = await repairJournals(logDir, journalPath);
    expect(report.journals).toBe(5);
    expect(report.gaps).toEqual([]);
    for (const call of calls) expect((await readJournal(journalPath(call.id), call.id, call.key)).frames).toEqual(call.sent);
    expect(await readdir(logDir)).toEqual([]);
    // Run again (a crash during the repair): nothing more to do, nothing doubled.
    expect((await repairJournals(logDir, journalPath)).restored).toBe(0);
    for (const call of calls) expect((await readJournal(journalPath(call.id), call.id, call.key)).frames).toEqual(call.sent);
  });
});

test('a journal that is gone (its recording completed and was removed) is not brought back', async () => {
  const log = await openLog(logDir);
  const [done, live] = await openCalls(log, 2);
  for (let n = 0; n < 5; n++) await tick([done!, live!], n);
  await done!.journal.close();
  await rm(journalPath(done!.id));
  await truncate(journalPath(live!.id), 0);
  const report = await repairJournals(logDir, journalPath);
  expect(report).toMatchObject({ journals: 1, restored: 5, obsolete: 5 });
  await expect(stat(journalPath(done!.id))).rejects.toMatchObject({ code: 'ENOENT' });
  expect((await readJournal(journalPath(live!.id), live!.id, live!.key)).frames).toEqual(live!.sent);
});

test('a full segment is retired once its journals are synchronised; what comes after stays in the next one', async () => {
  const log = await openLog(logDir, 16 * 1024);
  const calls = await openCalls(log, 4);
  for (let n = 0; n < 40; n++) await tick(calls, n);
  // 40 ticks of 4 calls' records (~360 bytes each) fill about three 16 KiB segments; the full ones are gone.
  await expect.poll(async () => (await readdir(logDir)).length).toBe(1);
  expect(await commitLogBytes(logDir)).toBeLessThan(16 * 1024 + 4 * 400);
  // What the retired segments held is in the journals on their own now: a power loss cannot take it.
  for (const call of calls) await truncate(journalPath(call.id), (await stat(journalPath(call.id))).size);
  await repairJournals(logDir, journalPath);
  for (const call of calls) expect((await readJournal(journalPath(call.id), call.id, call.key)).frames).toEqual(call.sent);
});

test('an entry cut short or corrupted ends its segment: the records before it are restored, none after', async () => {
  const log = await openLog(logDir);
  const [call] = await openCalls(log, 1);
  for (let n = 0; n < 6; n++) await tick([call!], n);
  const [segment] = await readdir(logDir);
  const path = join(logDir, segment!);
  const size = (await stat(path)).size;
  // The last entry torn by the crash, and garbage after it.
  await truncate(path, size - 40);
  await appendFile(path, randomBytes(10));
  await truncate(journalPath(call!.id), 0);
  const report = await repairJournals(logDir, journalPath);
  expect(report.restored).toBe(5);
  expect(report.tornBytes).toBeGreaterThan(0);
  expect((await readJournal(journalPath(call!.id), call!.id, call!.key)).frames).toEqual(call!.sent.slice(0, 10));
});

test('a journal missing records the log does not hold either is reported, not patched over', async () => {
  // Segments of about two entries: the first two records' segment is retired (the journal synchronised).
  const log = await openLog(logDir, 800);
  const [call] = await openCalls(log, 1);
  for (let n = 0; n < 3; n++) await tick([call!], n);
  await expect.poll(async () => (await readdir(logDir)).length).toBe(1);
  // Something other than a power loss emptied the synchronised journal: records 0 and 1 are nowhere now.
  await truncate(journalPath(call!.id), 0);
  const report = await repairJournals(logDir, journalPath);
  expect(report.gaps).toEqual([{ recordingId: call!.id, expected: 0, found: 2 }]);
  expect(report.restored).toBe(0);
  expect((await stat(journalPath(call!.id))).size).toBe(0);
});

test('reading frames back while flushes go on never reads a record the file does not hold yet', async () => {
  const log = await openLog(logDir);
  const [call] = await openCalls(log, 1);
  // Many records first, so that a read walks the file for a while (one read per record).
  for (let n = 0; n < 400; n++) await tick([call!], n);
  for (let n = 400; n < 450; n++) {
    // Flushes keep landing in the log (durable) while the reader walks the records written to the file.
    const reading = call!.journal.readFrames(0, 1_000_000);
    const flushing = tick([call!], n);
    const [frames] = await Promise.all([reading, flushing]);
    // Whatever it returns is the start of what was sent, in order: never a torn or missing record.
    expect(frames).toEqual(call!.sent.slice(0, frames.length));
  }
  expect((await call!.journal.readFrames(0, 1_000_000)).length).toBe(call!.sent.length);
});
