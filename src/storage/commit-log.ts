/**
 * The gateway's commit log: one durable write per group for the frame journals of every live recording.
 *
 * Each recording keeps its own journal file (journal.ts): read back while catching up, replayed when a worker
 * dies, replayed by recovery. Making each of those files durable on its own costs one synchronous write per
 * recording per flush tick (20 a second per call): a thousand calls would ask the disk for 20,000 of them a
 * second, far beyond what it gives (about 750 a second on this machine, through libuv's four threads). So the
 * journals write their records with plain buffered writes, and the same records are appended here, all of one
 * tick in one `O_DSYNC` write: a flush is durable once this write returns, whatever the number of calls.
 *
 * A segment is retired (deleted) once every record in it is also durable in its journal: when a segment is
 * full, each journal with records in it is synchronised once (`fdatasync`), then the segment goes; a journal
 * synchronises itself when it closes. At start-up, before recovery reads any journal, `repairJournals` puts
 * back into each journal what a power loss took from it (records only the page cache held), from the segments
 * left on disk, then deletes them.
 *
 * Segment `<seq>.log` (mode 0600) in `<DATA_DIR>/commit-log`, a run of entries:
 *
 *   entry  = crc32 (u32 BE, of the rest of the entry) || idLength (u8) || recording id (UTF-8)
 *            || record index (u32 BE) || recordLength (u32 BE) || record
 *   record = the journal record exactly as in the journal file: length (u32 BE) || nonce (12) || sealed
 *
 * An entry cut short or failing its CRC ends the segment (a write the crash interrupted). The records stay
 * sealed under their recording's data key and authenticated by their index (journal.ts): the log adds no
 * plaintext to the disk, and a record put in the wrong place fails when it is replayed.
 */
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { CallvaultError, ErrorCode } from '../errors/index.js';

const SEGMENT_SUFFIX = '.log';
/** Default segment size: at 1,000 two-track calls a segment fills in about 4 s, so journals sync ~250 times a second in all. */
export const DEFAULT_COMMIT_LOG_SEGMENT_BYTES = 64 * 1024 * 1024;
/** journal.ts: length prefix and nonce of a record. */
const RECORD_HEAD_BYTES = 4 + 12;
const TAG_LENGTH = 16;
const MAX_RECORD_BYTES = 64 * 1024 * 1024;

/** A journal whose records the log holds: synchronised before a segment holding them is deleted. */
export interface CommitLogJournal {
  /** Resolves once every record written to the journal file so far is on stable storage. */
  syncRecords(): Promise<void>;
}

export interface CommitLogOptions {
  segmentBytes?: number;
  /** Told when a full segment could not be retired (it stays on disk; the next start repairs from it). */
  onRetireFailed?: (err: CallvaultError) => void;
}

interface PendingEntry {
  bytes: Buffer;
  journal: CommitLogJournal;
  resolve: () => void;
  reject: (err: CallvaultError) => void;
}

export class CommitLog {
  readonly dir: string;
  readonly #segmentBytes: number;
  readonly #onRetireFailed: (err: CallvaultError) => void;
  #handle: FileHandle;
  #seq: number;
  #segmentSize = 0;
  /** Journals with records in the current segment. */
  #journals = new Set<CommitLogJournal>();
  #pending: PendingEntry[] = [];
  #writing: Promise<void> | null = null;
  #scheduled = false;
  #retiring = new Set<Promise<void>>();
  #failure: CallvaultError | null = null;
  #closed = false;
  /** Durable writes made so far (one per group of commits). */
  writes = 0;
  /** Entries made durable so far. */
  entries = 0;

  private constructor(dir: string, handle: FileHandle, seq: number, options: CommitLogOptions) {
    this.dir = dir;
    this.#handle = handle;
    this.#seq = seq;
    this.#segmentBytes = options.segmentBytes ?? DEFAULT_COMMIT_LOG_SEGMENT_BYTES;
    this.#onRetireFailed = options.onRetireFailed ?? (() => undefined);
  }

  /** Opens a fresh segment in `dir` (after `repairJournals` has consumed what an earlier process left). */
  static async open(dir: string, options: CommitLogOptions = {}): Promise<CommitLog> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const seq = (await segmentSeqs(dir)).reduce((max, s) => Math.max(max, s), 0) + 1;
      return new CommitLog(dir, await openSegment(dir, seq), seq, options);
    } catch (cause) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot open the commit log', { cause, details: { dir } });
    }
  }

  /**
   * Appends one journal record; resolves once it is on stable storage. Records committed in the same turn of
   * the event loop (every journal flushed by one gateway tick) go in one write.
   */
  commit(recordingId: string, index: number, record: readonly Uint8Array[], journal: CommitLogJournal): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new CallvaultError(ErrorCode.Closed, 'commit log is closed'));
    const bytes = encodeEntry(recordingId, index, record);
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ bytes, journal, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    // After this turn's microtasks: every journal the tick flushed has committed by then.
    setImmediate(() => {
      this.#scheduled = false;
      this.#writing = this.#writeGroup().finally(() => {
        this.#writing = null;
        if (this.#pending.length > 0) this.#schedule();
      });
    });
  }

  async #writeGroup(): Promise<void> {
    const group = this.#pending;
    this.#pending = [];
    if (group.length === 0) return;
    if (this.#failure) {
      for (const entry of group) entry.reject(this.#failure);
      return;
    }
    const bytes = group.length === 1 ? group[0]!.bytes : Buffer.concat(group.map((e) => e.bytes));
    try {
      const { bytesWritten } = await this.#handle.write(bytes, 0, bytes.length);
      if (bytesWritten !== bytes.length) throw new Error('short commit log write');
    } catch (cause) {
      // The segment's end is unknown now: nothing more is committed to it (the journals fail with it).
      this.#failure = new CallvaultError(ErrorCode.SpoolFailed, 'commit log write failed', { cause, details: { dir: this.dir, segment: this.#seq } });
      for (const entry of group) entry.reject(this.#failure);
      return;
    }
    this.writes++;
    this.entries += group.length;
    this.#segmentSize += bytes.length;
    for (const entry of group) {
      this.#journals.add(entry.journal);
      entry.resolve();
    }
    if (this.#segmentSize >= this.#segmentBytes) await this.#rotate();
  }

  /** Starts a new segment and retires the full one in the background. */
  async #rotate(): Promise<void> {
    const full = { handle: this.#handle, seq: this.#seq, journals: this.#journals };
    try {
      this.#handle = await openSegment(this.dir, this.#seq + 1);
    } catch (cause) {
      // Keep appending to the full segment: it only grows; retiring waits for the next chance.
      this.#onRetireFailed(new CallvaultError(ErrorCode.SpoolFailed, 'cannot open a new commit log segment', { cause, details: { dir: this.dir } }));
      return;
    }
    this.#seq++;
    this.#segmentSize = 0;
    this.#journals = new Set();
    const retiring = this.#retire(full).catch((err: unknown) => this.#onRetireFailed(err as CallvaultError));
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
  }

  async #retire(segment: { handle: FileHandle; seq: number; journals: Set<CommitLogJournal> }): Promise<void> {
    await segment.handle.close().catch(() => undefined);
    try {
      await Promise.all([...segment.journals].map((journal) => journal.syncRecords()));
      await rm(segmentPath(this.dir, segment.seq), { force: true });
    } catch (cause) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'could not retire a commit log segment', { cause, details: { dir: this.dir, segment: segment.seq } });
    }
  }

  /**
   * Waits for what is committed, and retires the current segment too once its journals are synchronised (a
   * clean shutdown leaves no segment behind). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#writing || this.#scheduled || this.#pending.length > 0) {
      await (this.#writing ?? new Promise((resolve) => setImmediate(resolve)));
    }
    await Promise.all([...this.#retiring]);
    const last = { handle: this.#handle, seq: this.#seq, journals: this.#journals };
    if (this.#failure) {
      await last.handle.close().catch(() => undefined);
      return;
    }
    await this.#retire(last);
  }
}

function segmentPath(dir: string, seq: number): string {
  return join(dir, `${String(seq).padStart(12, '0')}${SEGMENT_SUFFIX}`);
}

async function openSegment(dir: string, seq: number): Promise<FileHandle> {
  // O_DSYNC: a write returns once it is on stable storage (data and the size that reaches it).
  const handle = await open(segmentPath(dir, seq), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND | constants.O_DSYNC, 0o600);
  await handle.datasync();
  return handle;
}

async function segmentSeqs(dir: string): Promise<number[]> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return names
    .filter((name) => /^\d{12}\.log$/.test(name))
    .map((name) => Number(name.slice(0, 12)))
    .sort((a, b) => a - b);
}

function encodeEntry(recordingId: string, index: number, record: readonly Uint8Array[]): Buffer {
  const idLength = Buffer.byteLength(recordingId);
  let recordLength = 0;
  for (const part of record) recordLength += part.byteLength;
  const out = Buffer.allocUnsafe(4 + 1 + idLength + 4 + 4 + recordLength);
  let o = 4;
  out[o++] = idLength;
  o += out.write(recordingId, o, 'utf8');
  out.writeUInt32BE(index, o);
  o += 4;
  out.writeUInt32BE(recordLength, o);
  o += 4;
  for (const part of record) {
    out.set(part, o);
    o += part.byteLength;
  }
  out.writeUInt32BE(crc32(out.subarray(4)), 0);
  return out;
}

interface LogEntry {
  recordingId: string;
  index: number;
  record: Buffer;
}

/** The whole entries of a segment, up to the first one cut short or failing its CRC. */
function decodeSegment(bytes: Buffer): { entries: LogEntry[]; tornBytes: number } {
  const entries: LogEntry[] = [];
  let o = 0;
  while (o + 4 + 1 <= bytes.length) {
    const idLength = bytes[o + 4]!;
    const fixed = o + 4 + 1 + idLength + 8;
    if (fixed > bytes.length) break;
    const recordLength = bytes.readUInt32BE(fixed - 4);
    const end = fixed + recordLength;
    if (recordLength > MAX_RECORD_BYTES + RECORD_HEAD_BYTES || end > bytes.length) break;
    if (crc32(bytes.subarray(o + 4, end)) !== bytes.readUInt32BE(o)) break;
    entries.push({
      recordingId: bytes.toString('utf8', o + 5, o + 5 + idLength),
      index: bytes.readUInt32BE(fixed - 8),
      record: bytes.subarray(fixed, end),
    });
    o = end;
  }
  return { entries, tornBytes: bytes.length - o };
}

/** Where a journal's whole records end: the records and bytes before anything cut short or impossible. */
async function journalExtent(path: string): Promise<{ records: number; end: number; size: number } | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let o = 0;
  let records = 0;
  while (o + RECORD_HEAD_BYTES <= bytes.length) {
    const length = bytes.readUInt32BE(o);
    // Zeros where a power loss left the file longer than its data: the records end here.
    if (length < TAG_LENGTH || length > MAX_RECORD_BYTES || o + RECORD_HEAD_BYTES + length > bytes.length) break;
    o += RECORD_HEAD_BYTES + length;
    records++;
  }
  return { records, end: o, size: bytes.length };
}

export interface JournalRepairReport {
  segments: number;
  /** Records put back into journals (what a power loss took from them). */
  restored: number;
  /** Journals that got records back. */
  journals: number;
  /** Entries of recordings whose journal is gone (complete and removed): nothing to do. */
  obsolete: number;
  /** Recordings whose journal lacks a record the log does not have either (logged by the caller). */
  gaps: Array<{ recordingId: string; expected: number; found: number }>;
  /** Bytes at segments' ends that did not form a whole entry. */
  tornBytes: number;
}

/**
 * Start-up, before recovery: every record the commit log made durable is put back into its journal where the
 * journal lacks it (a power loss kept the log's synchronous write and lost the journal's buffered one), then
 * the journals are synchronised and the segments deleted. Journals of recordings no longer on disk are left
 * alone (those recordings completed). Idempotent: run twice (a crash during repair), it restores nothing more.
 */
export async function repairJournals(dir: string, journalPath: (recordingId: string) => string): Promise<JournalRepairReport> {
  const report: JournalRepairReport = { segments: 0, restored: 0, journals: 0, obsolete: 0, gaps: [], tornBytes: 0 };
  let seqs: number[];
  try {
    seqs = await segmentSeqs(dir);
  } catch (cause) {
    throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot list the commit log', { cause, details: { dir } });
  }
  const extents = new Map<string, { records: number; end: number; size: number } | null>();
  /** Per journal: the records to append, in order (written with one write and one sync each). */
  const restore = new Map<string, { truncateTo: number | null; records: Buffer[] }>();
  const gapped = new Set<string>();
  try {
    for (const seq of seqs) {
      report.segments++;
      const { entries, tornBytes } = decodeSegment(await readFile(segmentPath(dir, seq)));
      report.tornBytes += tornBytes;
      for (const entry of entries) {
        if (gapped.has(entry.recordingId)) continue;
        const path = journalPath(entry.recordingId);
        if (!extents.has(path)) extents.set(path, await journalExtent(path));
        const extent = extents.get(path)!;
        if (!extent) {
          report.obsolete++;
          continue;
        }
        if (entry.index < extent.records) continue;
        if (entry.index > extent.records) {
          gapped.add(entry.recordingId);
          report.gaps.push({ recordingId: entry.recordingId, expected: extent.records, found: entry.index });
          continue;
        }
        let plan = restore.get(path);
        if (!plan) restore.set(path, (plan = { truncateTo: extent.size > extent.end ? extent.end : null, records: [] }));
        plan.records.push(entry.record);
        extent.records++;
        report.restored++;
      }
    }
    for (const [path, plan] of restore) {
      if (plan.truncateTo !== null) await truncate(path, plan.truncateTo);
      const handle = await open(path, 'a');
      try {
        const bytes = Buffer.concat(plan.records);
        const { bytesWritten } = await handle.write(bytes, 0, bytes.length);
        if (bytesWritten !== bytes.length) throw new Error('short journal write');
        await handle.datasync();
      } finally {
        await handle.close();
      }
    }
    report.journals = restore.size;
    for (const seq of seqs) await rm(segmentPath(dir, seq), { force: true });
  } catch (cause) {
    throw new CallvaultError(ErrorCode.SpoolFailed, 'could not repair the journals from the commit log', { cause, details: { dir } });
  }
  return report;
}

/** Bytes the commit log holds on disk (all segments), for tests and the free-space picture. */
export async function commitLogBytes(dir: string): Promise<number> {
  let total = 0;
  for (const seq of await segmentSeqs(dir)) total += (await stat(segmentPath(dir, seq))).size;
  return total;
}
