/**
 * The frame journal: every frame a recording accepts is appended here, encrypted, before the pipeline
 * sees it, and made durable (fdatasync) at a fixed cadence. It is what a crash cannot take away: the
 * pipeline holds audio back (the lag allowance that lets a slow track catch up, the partial segment the
 * encryptor is still filling), so the container spool alone would lose seconds. Recovery replays the
 * journal through the same deterministic pipeline and gets the recording the call would have produced.
 *
 * File `<id>.journal` next to the spool data, mode 0600, a run of records:
 *
 *   record = length (u32 BE, bytes of sealed) || nonce (12) || sealed (AES-256-GCM ciphertext || 16-byte tag)
 *   AAD    = "callvault-journal-v1" || recording id (UTF-8) || record index (u32 BE)
 *   plaintext = frame*, frame = trackIdLength (u8) || trackId || role (u8: 0 caller, 1 agent)
 *               || encoding (u8: 0 mulaw, 1 pcm_s16le, 2 alaw) || sampleRate (u32 BE) || position (u64 BE)
 *               || dataLength (u32 BE) || data
 *
 * The record index in the AAD stops records from being reordered, dropped from the middle or replayed.
 * A record cut short at the end of the file is a write the crash interrupted: reading stops there. Any
 * other failure is tampering or a wrong key and reading fails.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { CommitLog, CommitLogJournal } from './commit-log.js';
import type { FrameEncoding, InputFrame, TrackRole } from '../pipeline/types.js';

export const JOURNAL_SUFFIX = '.journal';
const AAD_PREFIX = Buffer.from('callvault-journal-v1', 'utf8');
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const LENGTH_BYTES = 4;
/** A record larger than this is not something callvault wrote. */
const MAX_RECORD_BYTES = 64 * 1024 * 1024;
/**
 * With a commit log, the file gets its records in groups: once this much is waiting, or the oldest has waited
 * this long (about a second of a call: one buffered write a second per call instead of twenty).
 */
const WRITE_OUT_BYTES = 64 * 1024;
const WRITE_OUT_MS = 1000;

function aad(recordingId: string, index: number): Buffer {
  const out = Buffer.alloc(AAD_PREFIX.length + Buffer.byteLength(recordingId) + 4);
  AAD_PREFIX.copy(out, 0);
  out.write(recordingId, AAD_PREFIX.length, 'utf8');
  out.writeUInt32BE(index, out.length - 4);
  return out;
}

function encodeFrames(frames: readonly InputFrame[]): Buffer {
  let total = 0;
  for (const frame of frames) total += 1 + Buffer.byteLength(frame.trackId) + 1 + 1 + 4 + 8 + 4 + frame.data.byteLength;
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (const frame of frames) {
    const idLength = out.write(frame.trackId, o + 1, 'utf8');
    out[o] = idLength;
    o += 1 + idLength;
    out[o++] = frame.role === 'agent' ? 1 : 0;
    out[o++] = frame.encoding === 'pcm_s16le' ? 1 : frame.encoding === 'alaw' ? 2 : 0;
    out.writeUInt32BE(frame.sampleRate, o);
    o += 4;
    out.writeBigUInt64BE(BigInt(frame.position), o);
    o += 8;
    out.writeUInt32BE(frame.data.byteLength, o);
    o += 4;
    out.set(frame.data, o);
    o += frame.data.byteLength;
  }
  return out;
}

function decodeFrames(plain: Buffer): InputFrame[] {
  const frames: InputFrame[] = [];
  let o = 0;
  const corrupt = () => new CallvaultError(ErrorCode.SpoolFailed, 'journal record does not decode');
  while (o < plain.length) {
    const idLength = plain[o]!;
    if (o + 1 + idLength + 18 > plain.length) throw corrupt();
    const trackId = plain.toString('utf8', o + 1, o + 1 + idLength);
    o += 1 + idLength;
    const role: TrackRole = plain[o++] === 1 ? 'agent' : 'caller';
    const code = plain[o++];
    const encoding: FrameEncoding = code === 1 ? 'pcm_s16le' : code === 2 ? 'alaw' : 'mulaw';
    const sampleRate = plain.readUInt32BE(o);
    o += 4;
    const position = Number(plain.readBigUInt64BE(o));
    o += 8;
    const length = plain.readUInt32BE(o);
    o += 4;
    if (o + length > plain.length) throw corrupt();
    frames.push({ trackId, role, encoding, sampleRate, position, data: new Uint8Array(plain.subarray(o, o + length)) });
    o += length;
  }
  return frames;
}

export interface JournalWriterOptions {
  path: string;
  recordingId: string;
  dataKey: Uint8Array;
  /**
   * The gateway's commit log (commit-log.ts): the journal file is then written with buffered writes and a
   * flush is durable once the log's group write holds its record. Without it the file itself is O_DSYNC.
   */
  commitLog?: CommitLog;
}

/**
 * Appends frames to a recording's journal. `add()` only buffers; `flush()` seals what is buffered into one
 * record and writes it durably (one record per flush, whatever the number of frames). Flushes run one at a
 * time, in order. Durable means: with a commit log, the log's group write (one for every journal flushed in
 * the same tick) holds the record, and the journal file gets it by a buffered write; without one, the file is
 * opened O_DSYNC, so its own write returns once the data is on stable storage.
 */
export class JournalWriter implements CommitLogJournal {
  readonly path: string;
  readonly #recordingId: string;
  readonly #key: Uint8Array;
  readonly #commitLog: CommitLog | undefined;
  #handle: FileHandle | null;
  /** close()'s synchronisation of the file, once it began (syncRecords waits for it when the handle is gone). */
  #closeSync: Promise<unknown> = Promise.resolve();
  #buffered: InputFrame[] = [];
  /** With a commit log: records durable in the log and not yet in the file (written out in groups). */
  #unwritten: Buffer[] = [];
  #unwrittenBytes = 0;
  #unwrittenSince = 0;
  /** Bytes in the file (records are written at explicit positions, so nothing depends on the file offset). */
  #fileBytes = 0;
  #recordCount = 0;
  #tail: Promise<void> = Promise.resolve();
  #failure: CallvaultError | null = null;
  #closed = false;
  /** Frames made durable so far. */
  durableFrames = 0;
  /** Bytes written to the file so far. */
  bytes = 0;
  /** Where each durable record sits, so frames can be read back by index (a sender faster than the pipeline). */
  readonly #records: Array<{ offset: number; length: number; firstFrame: number; frames: number }> = [];
  #reader: FileHandle | null = null;

  private constructor(handle: FileHandle, opts: JournalWriterOptions, records: number) {
    this.#handle = handle;
    this.path = opts.path;
    this.#recordingId = opts.recordingId;
    this.#key = Uint8Array.from(opts.dataKey);
    this.#commitLog = opts.commitLog;
    this.#recordCount = records;
  }

  static async create(opts: JournalWriterOptions): Promise<JournalWriter> {
    try {
      // Alone, O_DSYNC: every write is synchronised data (what fdatasync after each write gave), in the same
      // call. With a commit log, the log's write is the synchronous one and this file is synchronised lazily.
      const sync = opts.commitLog ? 0 : constants.O_DSYNC;
      const handle = await open(opts.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | sync, 0o600);
      await handle.datasync();
      return new JournalWriter(handle, opts, 0);
    } catch (cause) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot create the frame journal', { cause, details: { recordingId: opts.recordingId } });
    }
  }

  get failure(): CallvaultError | null {
    return this.#failure;
  }

  get dirty(): boolean {
    return this.#buffered.length > 0;
  }

  add(frame: InputFrame): void {
    if (this.#closed) return;
    this.#buffered.push(frame);
  }

  /** Seals and syncs everything added so far; rejects with SPOOL_FAILED once a write failed. */
  flush(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#buffered.length === 0) return this.#tail;
    const frames = this.#buffered;
    this.#buffered = [];
    const index = this.#recordCount++;
    const next = this.#tail.then(async () => {
      if (this.#failure) throw this.#failure;
      const handle = this.#handle;
      if (!handle) throw new CallvaultError(ErrorCode.Closed, 'journal is closed');
      const nonce = randomBytes(NONCE_LENGTH);
      const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_LENGTH });
      cipher.setAAD(aad(this.#recordingId, index));
      const body = Buffer.concat([cipher.update(encodeFrames(frames)), cipher.final(), cipher.getAuthTag()]);
      const head = Buffer.allocUnsafe(LENGTH_BYTES);
      head.writeUInt32BE(body.length, 0);
      const length = LENGTH_BYTES + NONCE_LENGTH + body.length;
      try {
        if (this.#commitLog) {
          // Durable once the log's group write holds it; the file gets it with the next write-out.
          await this.#commitLog.commit(this.#recordingId, index, [head, nonce, body], this);
          if (this.#unwritten.length === 0) this.#unwrittenSince = performance.now();
          this.#unwritten.push(head, nonce, body);
          this.#unwrittenBytes += length;
        } else {
          // One record per write: alone (O_DSYNC) it is durable when writev returns. A short write would leave a
          // torn record, which readers stop at; it is an error here all the same.
          const { bytesWritten } = await handle.writev([head, nonce, body], this.#fileBytes);
          if (bytesWritten !== length) throw new Error('short journal write');
          this.#fileBytes += length;
        }
      } catch (cause) {
        throw this.#fail(cause);
      }
      this.#records.push({ offset: this.bytes, length, firstFrame: this.durableFrames, frames: frames.length });
      this.bytes += length;
      this.durableFrames += frames.length;
      if (this.#unwrittenBytes >= WRITE_OUT_BYTES || performance.now() - this.#unwrittenSince >= WRITE_OUT_MS) await this.#writeOut(handle);
    });
    this.#tail = next.catch(() => undefined);
    return next;
  }

  #fail(cause: unknown): CallvaultError {
    this.#failure ??= new CallvaultError(ErrorCode.SpoolFailed, 'frame journal write failed', { cause, details: { recordingId: this.#recordingId } });
    return this.#failure;
  }

  /** Writes the records the commit log holds and the file does not yet, in one write (run inside the chain). */
  async #writeOut(handle: FileHandle): Promise<void> {
    if (this.#unwritten.length === 0) return;
    const parts = this.#unwritten;
    const bytes = this.#unwrittenBytes;
    this.#unwritten = [];
    this.#unwrittenBytes = 0;
    try {
      const { bytesWritten } = await handle.writev(parts, this.#fileBytes);
      if (bytesWritten !== bytes) throw new Error('short journal write');
    } catch (cause) {
      // The log still holds these records: the next start puts them back. This process cannot go on with the file.
      throw this.#fail(cause);
    }
    this.#fileBytes += bytes;
  }

  /** Runs `work` with the open handle, in order with the flushes; a no-op once closed. */
  #inChain(work: (handle: FileHandle) => Promise<void>): Promise<void> {
    const next = this.#tail.then(async () => {
      const handle = this.#handle;
      if (handle) await work(handle);
    });
    this.#tail = next.catch(() => undefined);
    return next;
  }

  /** CommitLogJournal: every record written so far reaches stable storage (before a log segment holding them goes). */
  async syncRecords(): Promise<void> {
    await this.#inChain(async (handle) => {
      await this.#writeOut(handle);
      await handle.datasync();
    });
    // Closing or closed: close() synchronises the file before it lets go of it.
    if (!this.#handle) await this.#closeSync;
  }

  /**
   * The journal file's bytes from `offset` on, as far as whole durable records go (sealed: no plaintext), with
   * how many frames the file then holds in all. Records the commit log holds and the file not yet are written
   * out first. A spool checkpoint uploads these; null once the journal is closed.
   */
  async sealedSince(offset: number): Promise<{ bytes: Buffer; end: number; frames: number } | null> {
    let out: { bytes: Buffer; end: number; frames: number } | null = null;
    await this.#inChain(async (handle) => {
      await this.#writeOut(handle);
      const end = this.#fileBytes;
      const frames = this.durableFrames;
      const bytes = Buffer.allocUnsafe(Math.max(0, end - offset));
      if (bytes.length > 0) {
        this.#reader ??= await open(this.path, 'r');
        const { bytesRead } = await this.#reader.read(bytes, 0, bytes.length, offset);
        if (bytesRead !== bytes.length) throw new CallvaultError(ErrorCode.SpoolFailed, 'frame journal is shorter than written');
      }
      out = { bytes, end, frames };
    });
    return out;
  }

  /**
   * Reads durable frames back, from frame index `from` on, whole records at a time, at least one record and
   * about `atLeast` frames; [] when nothing from `from` on is durable yet.
   */
  async readFrames(from: number, atLeast: number): Promise<InputFrame[]> {
    await this.#inChain((handle) => this.#writeOut(handle));
    let i = this.#records.findIndex((r) => r.firstFrame + r.frames > from);
    if (i < 0) return [];
    this.#reader ??= await open(this.path, 'r');
    const frames: InputFrame[] = [];
    for (; i < this.#records.length && frames.length < atLeast; i++) {
      const record = this.#records[i]!;
      // Durable (in the commit log) but not in the file yet: a flush after the write-out above. Next time.
      if (record.offset + record.length > this.#fileBytes) break;
      const bytes = Buffer.allocUnsafe(record.length);
      const { bytesRead } = await this.#reader.read(bytes, 0, record.length, record.offset);
      if (bytesRead !== record.length) throw new CallvaultError(ErrorCode.SpoolFailed, 'frame journal is shorter than written');
      const decoded = openRecord(bytes, this.#recordingId, this.#key, i);
      frames.push(...decoded.slice(Math.max(0, from - record.firstFrame)));
    }
    return frames;
  }

  /**
   * Flushes what is left and releases the file (it stays on disk until the recording is complete). Rejects
   * with SPOOL_FAILED when the journal could not be made whole, after releasing the file all the same.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    // The last frames' flush decides whether the journal is whole: its failure is the caller's to report.
    const lastFlush = this.flush().then(
      () => null,
      (err: unknown) => err,
    );
    this.#closed = true;
    // After the last flush, in order: the records the file still lacks and, with a commit log, a sync — the file
    // must be whole on its own before the log segments holding its records may go (whoever finishes the
    // recording reads it, maybe after a power loss). Also after a failed flush: what is kept must outlive one.
    const finished = this.#inChain(async (handle) => {
      await this.#writeOut(handle);
      if (!this.#commitLog) return;
      await handle.datasync().catch((cause: unknown) => {
        throw new CallvaultError(ErrorCode.SpoolFailed, 'frame journal sync failed', { cause, details: { recordingId: this.#recordingId } });
      });
    });
    // A failed sync keeps the log segments that hold these records (syncRecords rejects with it).
    this.#closeSync = finished;
    let failure = await lastFlush;
    const finishFailure = await finished.then(
      () => null,
      (err: unknown) => err,
    );
    failure ??= finishFailure;
    await this.#tail;
    const handle = this.#handle;
    this.#handle = null;
    await handle?.close();
    const reader = this.#reader;
    this.#reader = null;
    await reader?.close();
    if (failure) throw failure;
  }
}

/** Decrypts one whole record (length prefix included) at record index `index`. */
function openRecord(record: Buffer, recordingId: string, dataKey: Uint8Array, index: number): InputFrame[] {
  const nonce = record.subarray(LENGTH_BYTES, LENGTH_BYTES + NONCE_LENGTH);
  const body = record.subarray(LENGTH_BYTES + NONCE_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', dataKey, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad(recordingId, index));
  decipher.setAuthTag(body.subarray(body.length - TAG_LENGTH));
  let plain: Buffer;
  try {
    plain = Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_LENGTH)), decipher.final()]);
  } catch (cause) {
    throw new CallvaultError(ErrorCode.SpoolFailed, 'journal record failed authentication', { cause, details: { recordingId, index } });
  }
  return decodeFrames(plain);
}

export interface JournalContents {
  frames: InputFrame[];
  records: number;
  /** Bytes at the end of the file that did not form a whole record (a write the crash interrupted). */
  tornBytes: number;
}

/** Reads a journal back; stops at a torn final record, fails (SPOOL_FAILED) on any record that does not authenticate. */
export async function readJournal(path: string, recordingId: string, dataKey: Uint8Array): Promise<JournalContents> {
  let bytes: Buffer;
  try {
    const handle = await open(path, 'r');
    try {
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (cause) {
    throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot read the frame journal', { cause, details: { recordingId } });
  }
  const frames: InputFrame[] = [];
  let offset = 0;
  let index = 0;
  while (offset + LENGTH_BYTES + NONCE_LENGTH <= bytes.length) {
    const length = bytes.readUInt32BE(offset);
    if (length < TAG_LENGTH || length > MAX_RECORD_BYTES) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'journal record has an impossible length', { details: { recordingId, index } });
    }
    const end = offset + LENGTH_BYTES + NONCE_LENGTH + length;
    if (end > bytes.length) break;
    for (const frame of openRecord(bytes.subarray(offset, end), recordingId, dataKey, index)) frames.push(frame);
    offset = end;
    index++;
  }
  return { frames, records: index, tornBytes: bytes.length - offset };
}
