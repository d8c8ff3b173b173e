/**
 * The spool is the durable local record of truth for each recording: encrypted bytes go to disk
 * first and uploads tail the file, so memory per call stays bounded however long the call lasts,
 * and a crash leaves everything needed to finish the upload later.
 *
 * Per recording: `<id>.cvr` (the data, append-only) and `<id>.json` (the manifest), both 0600.
 */
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { JOURNAL_SUFFIX } from './journal.js';

const DATA_SUFFIX = '.cvr';
const MANIFEST_SUFFIX = '.json';
// Ids become file names: no separators, no leading dot, nothing a shell or S3 key would mangle.
const RECORDING_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

export interface SpoolEntry {
  recordingId: string;
  manifest: Record<string, unknown>;
  /** Bytes of data on disk for this recording. */
  size: number;
  /** Why the entry could not be read (its manifest or data file is missing or malformed); left alone. */
  unreadable?: string;
}

export class Spool {
  private ready: Promise<void> | undefined;

  /** `dir` is the spool root, `<DATA_DIR>/spool`; it is created (0700) on first use. */
  constructor(readonly dir: string) {}

  private ensureDir(): Promise<void> {
    this.ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(
      () => undefined,
      (err: unknown) => {
        this.ready = undefined;
        throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot create the spool directory', {
          cause: err,
          details: { dir: this.dir },
        });
      },
    );
    return this.ready;
  }

  async create(recordingId: string, manifest: Record<string, unknown>): Promise<SpoolFile> {
    assertRecordingId(recordingId);
    await this.ensureDir();
    const dataPath = join(this.dir, recordingId + DATA_SUFFIX);
    const manifestPath = join(this.dir, recordingId + MANIFEST_SUFFIX);
    let handle: FileHandle | undefined;
    try {
      // Exclusive create: two calls with one id must never interleave audio in one file.
      handle = await open(dataPath, 'wx', 0o600);
      await writeManifest(manifestPath, manifest);
    } catch (err) {
      if (handle) {
        await handle.close().catch(() => undefined);
        await rm(dataPath, { force: true });
        await rm(`${manifestPath}.tmp`, { force: true });
      }
      const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
      throw new CallvaultError(
        exists ? ErrorCode.Conflict : ErrorCode.SpoolFailed,
        exists ? 'a spool file for this recording already exists' : 'cannot create spool file',
        { cause: err, details: { recordingId } },
      );
    }
    return new SpoolFile(recordingId, dataPath, manifestPath, handle);
  }

  /** Where a recording's container data lives while it is spooled. */
  dataPath(recordingId: string): string {
    assertRecordingId(recordingId);
    return join(this.dir, recordingId + DATA_SUFFIX);
  }

  /**
   * The data file of a recording, open for reading (live audio, or audio waiting for S3); null when this
   * gateway holds no spool for it. The handle stays valid after the upload completes and removes the file.
   */
  async openData(recordingId: string): Promise<FileHandle | null> {
    try {
      return await open(this.dataPath(recordingId), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new CallvaultError(ErrorCode.SpoolFailed, 'could not open the spooled recording', { cause: err, details: { recordingId } });
    }
  }

  /** Deletes every file of a recording (manifest first, so list() never sees a half-removed entry). */
  async removeFiles(recordingId: string): Promise<void> {
    assertRecordingId(recordingId);
    for (const suffix of [MANIFEST_SUFFIX, DATA_SUFFIX, JOURNAL_SUFFIX]) await rm(join(this.dir, recordingId + suffix), { force: true });
  }

  /** Where a recording's manifest lives (written last by whoever puts a whole entry in place: list() keys on it). */
  manifestPath(recordingId: string): string {
    assertRecordingId(recordingId);
    return join(this.dir, recordingId + MANIFEST_SUFFIX);
  }

  /** Where a recording's frame journal lives (see journal.ts); removed together with the spool file. */
  journalPath(recordingId: string): string {
    assertRecordingId(recordingId);
    return join(this.dir, recordingId + JOURNAL_SUFFIX);
  }

  /**
   * Recovery: the data file of a recording found by list(), emptied and reopened for writing, so its
   * container can be rebuilt from the journal. The manifest and the journal stay as they are.
   */
  async rewrite(recordingId: string): Promise<SpoolFile> {
    assertRecordingId(recordingId);
    const dataPath = join(this.dir, recordingId + DATA_SUFFIX);
    try {
      const handle = await open(dataPath, 'w', 0o600);
      return new SpoolFile(recordingId, dataPath, join(this.dir, recordingId + MANIFEST_SUFFIX), handle);
    } catch (err) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot reopen spool file', { cause: err, details: { recordingId } });
    }
  }

  /**
   * Recovery: the data file of a recording that was written whole and sealed before its upload began (an
   * import), as a sealed SpoolFile its upload can read.
   */
  async reopenSealed(recordingId: string): Promise<SpoolFile> {
    assertRecordingId(recordingId);
    const dataPath = join(this.dir, recordingId + DATA_SUFFIX);
    try {
      const { size } = await stat(dataPath);
      return SpoolFile.sealedOnDisk(recordingId, dataPath, join(this.dir, recordingId + MANIFEST_SUFFIX), size);
    } catch (err) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot reopen spool file', { cause: err, details: { recordingId } });
    }
  }

  /** Recordings left on disk (after a crash, or not yet uploaded): the seam for recovery. */
  async list(): Promise<SpoolEntry[]> {
    let names: string[];
    await this.ensureDir();
    try {
      names = await readdir(this.dir);
    } catch (err) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot list the spool directory', { cause: err });
    }
    const entries: SpoolEntry[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(MANIFEST_SUFFIX)) continue;
      const recordingId = name.slice(0, -MANIFEST_SUFFIX.length);
      if (!RECORDING_ID.test(recordingId)) continue;
      let manifest: unknown;
      let size: number;
      try {
        manifest = JSON.parse(await readFile(join(this.dir, name), 'utf8'));
        size = (await stat(join(this.dir, recordingId + DATA_SUFFIX))).size;
      } catch (err) {
        // A manifest without data (removal interrupted half-way) or an unreadable one: listed so recovery says so.
        entries.push({ recordingId, manifest: {}, size: 0, unreadable: (err as NodeJS.ErrnoException).code ?? (err as Error).name });
        continue;
      }
      if (manifest === null || typeof manifest !== 'object' || Array.isArray(manifest)) {
        entries.push({ recordingId, manifest: {}, size: 0, unreadable: 'manifest is not an object' });
        continue;
      }
      entries.push({ recordingId, manifest: manifest as Record<string, unknown>, size });
    }
    return entries;
  }
}

type Listener = () => void;

export class SpoolFile {
  private writer: FileHandle | undefined;
  private written = 0;
  private tail: Promise<void> = Promise.resolve();
  private state: 'open' | 'sealing' | 'sealed' | 'failed' | 'removed' = 'open';
  private failure: CallvaultError | undefined;
  // Stays true after remove(): the size is final even when the file is gone.
  private wasSealed = false;
  private readonly listeners = new Set<Listener>();

  /** @internal created by Spool.create */
  constructor(
    readonly recordingId: string,
    readonly path: string,
    readonly manifestPath: string,
    writer: FileHandle | undefined,
  ) {
    this.writer = writer;
  }

  /** @internal a data file already complete on disk (Spool.reopenSealed) */
  static sealedOnDisk(recordingId: string, path: string, manifestPath: string, size: number): SpoolFile {
    const file = new SpoolFile(recordingId, path, manifestPath, undefined);
    file.written = size;
    file.state = 'sealed';
    file.wasSealed = true;
    return file;
  }

  /** Bytes appended and written to the file so far. */
  get size(): number {
    return this.written;
  }

  /** True once seal() completed: `size` is final (also after remove()). */
  get sealed(): boolean {
    return this.wasSealed;
  }

  /** Why appends stopped working, when they did. */
  get error(): CallvaultError | undefined {
    return this.failure;
  }

  /**
   * Appends in call order; resolves once these bytes are in the file. The bytes are copied first,
   * so the caller may reuse its buffer as soon as append() returns.
   */
  append(bytes: Uint8Array): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.unavailable('append'));
    if (bytes.byteLength === 0) return this.tail;
    const copy = Buffer.from(bytes);
    const next = this.tail.then(async () => {
      if (this.failure) throw this.failure;
      try {
        let offset = 0;
        while (offset < copy.length) {
          const { bytesWritten } = await this.writer!.write(copy, offset, copy.length - offset);
          offset += bytesWritten;
        }
      } catch (err) {
        // A partial write leaves the file's end unknown: refuse everything after it.
        this.fail(new CallvaultError(ErrorCode.SpoolFailed, 'spool write failed', { cause: err, details: this.ids() }));
        throw this.failure;
      }
      this.written += copy.length;
      this.notify();
    });
    // The chain must survive a failed append so later ones reject with the recorded failure.
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** No more appends; flushes to stable storage so the data outlives a power loss. */
  async seal(): Promise<void> {
    if (this.state === 'sealed') return;
    if (this.state !== 'open') throw this.unavailable('seal');
    this.state = 'sealing';
    await this.tail;
    if (this.failure) throw this.failure;
    try {
      await this.writer!.datasync();
      await this.writer!.close();
    } catch (err) {
      this.fail(new CallvaultError(ErrorCode.SpoolFailed, 'spool flush failed', { cause: err, details: this.ids() }));
      throw this.failure;
    }
    this.writer = undefined;
    this.state = 'sealed';
    this.wasSealed = true;
    this.notify();
  }

  /** Deletes data and manifest (after a confirmed upload, or to discard). */
  async remove(): Promise<void> {
    if (this.state === 'removed') return;
    await this.tail;
    const writer = this.writer;
    this.writer = undefined;
    if (this.state !== 'sealed' && !this.failure) {
      this.failure = new CallvaultError(ErrorCode.SpoolFailed, 'spool file was removed', { details: this.ids() });
    }
    this.state = 'removed';
    await writer?.close().catch(() => undefined);
    // Manifest first: data left without one (removal interrupted) is invisible to list(), never half-listed.
    await rm(this.manifestPath, { force: true });
    await rm(this.path, { force: true });
    await rm(this.path.slice(0, -DATA_SUFFIX.length) + JOURNAL_SUFFIX, { force: true });
    this.notify();
  }

  /**
   * Called after every change of size or state; returns the unsubscribe function.
   * Readers that tail the file use it to wake up instead of polling.
   */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private fail(err: CallvaultError): void {
    this.failure ??= err;
    this.state = 'failed';
    const writer = this.writer;
    this.writer = undefined;
    void writer?.close().catch(() => undefined);
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private unavailable(operation: string): CallvaultError {
    if (this.failure && this.state === 'failed') return this.failure;
    return new CallvaultError(ErrorCode.Closed, `cannot ${operation}: spool file is ${this.state}`, { details: this.ids() });
  }

  private ids(): Record<string, unknown> {
    return { recordingId: this.recordingId };
  }
}

function assertRecordingId(recordingId: string): void {
  if (!RECORDING_ID.test(recordingId)) {
    throw new CallvaultError(ErrorCode.BadRequest, 'recording id is not usable as a spool file name', {
      details: { recordingId: recordingId.slice(0, 140) },
    });
  }
}

/**
 * Written under a temporary name then renamed, so list() never sees half a manifest. The data
 * file's exclusive create already guarantees nobody else owns this recording id.
 */
async function writeManifest(path: string, manifest: Record<string, unknown>): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'w', 0o600);
  try {
    await handle.writeFile(JSON.stringify(manifest));
    await handle.sync();
  } finally {
    await handle.close();
  }
  // A leftover temporary from a crash may carry older, looser permissions.
  await chmod(temporary, 0o600);
  await rename(temporary, path);
}
