/**
 * Streams a spool file to S3 while the call is still live, with @aws-sdk/lib-storage's Upload.
 *
 * How lib-storage (3.1169) consumes a Readable body, which shapes everything here:
 * - it iterates the stream (`for await`) and cuts parts of exactly `partSize` bytes, but only
 *   yields a part once it holds MORE than `partSize` bytes (or the stream ended);
 * - when the first part is also the last it sends one PutObject, otherwise multipart;
 * - in Node, `httpUploadProgress` fires once per part after that part's request finished, with
 *   `part` set to its number (for a single PUT: part 1);
 * - it never passes an abort signal to the requests it sends; an in-flight part always finishes.
 *
 * So the body (SpoolTailReader) pushes one byte beyond each part: the first push is
 * `partSize + 1` bytes, every later one `partSize`, and each push lets lib-storage cut exactly
 * one part. Without that byte, part N would only be cut once part N+1 was read, needing two
 * permits per upload and deadlocking a limiter of 1.
 *
 * Known limit: lib-storage keeps the bytes beyond a cut part as a view into the buffer that part
 * was cut from, so after part N is uploaded (and its permit released) that buffer stays alive
 * until the next push, i.e. while the call waits for more audio. Memory is still bounded per call
 * (about one part), but this retained buffer is outside the limiter's count. Removing it needs a
 * part feeder that bypasses lib-storage's chunker.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AbortMultipartUploadCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';
import type { PartLimiter, PartPermit } from './limiter.js';
import { errorName, httpStatus, isTransientS3Error } from './s3.js';
import type { SpoolFile } from './spool.js';

export interface PartUploadedInfo {
  partNumber: number;
  bytes: number;
  /** From reading the part off the spool to S3 confirming it. */
  seconds: number;
}

export interface SpoolUploadOptions {
  client: S3Client;
  bucket: string;
  key: string;
  spoolFile: SpoolFile;
  /** Bytes per part, at least 5 MiB (S3's minimum for all parts but the last). */
  partSize: number;
  limiter: PartLimiter;
  contentType?: string;
  metadata?: Record<string, string>;
  signal?: AbortSignal;
  onPartUploaded?(info: PartUploadedInfo): void;
  /** Told the multipart UploadId once S3 has assigned it, so it can be stored and aborted or resumed by id. */
  onUploadId?(uploadId: string): void;
  /** Milliseconds clock for `seconds`; injectable for tests. */
  now?: () => number;
}

export interface SpoolUploadResult {
  size: number;
  etag?: string;
}

export interface SpoolUpload {
  /**
   * Resolves once the object is complete in S3. Rejects with UPLOAD_FAILED (retryable when the
   * cause was a network or 5xx error); the multipart upload is aborted and the spool file kept.
   */
  readonly done: Promise<SpoolUploadResult>;
  /**
   * Stops feeding parts and aborts the multipart upload. A part already being sent finishes
   * first (lib-storage cannot cancel it). If the object was already complete, `done` resolves.
   */
  abort(reason?: unknown): void;
  /**
   * Once `done` rejected: the multipart UploadId this attempt left open in S3 because aborting it failed too
   * (S3 was away), so the caller can abort it once S3 answers again. Undefined otherwise.
   */
  readonly orphanedUploadId: string | undefined;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;

export function startSpoolUpload(opts: SpoolUploadOptions): SpoolUpload {
  if (!Number.isInteger(opts.partSize) || opts.partSize < MIN_PART_SIZE) {
    throw new CallvaultError(ErrorCode.ConfigInvalid, 'upload part size must be an integer of at least 5 MiB', {
      details: { partSize: opts.partSize },
    });
  }
  const now = opts.now ?? (() => performance.now());
  const details = { bucket: opts.bucket, key: opts.key, recordingId: opts.spoolFile.recordingId };
  const reader = new SpoolTailReader(opts.spoolFile, opts.partSize, opts.limiter, now);
  const upload = new Upload({
    client: opts.client,
    params: {
      Bucket: opts.bucket,
      Key: opts.key,
      Body: reader,
      ContentType: opts.contentType ?? 'application/octet-stream',
      ...(opts.metadata ? { Metadata: opts.metadata } : {}),
    },
    partSize: opts.partSize,
    // One part per upload at a time: the global limiter, not each call, decides parallelism.
    queueSize: 1,
    leavePartsOnError: false,
  });
  let uploadIdReported = false;
  upload.on('httpUploadProgress', (progress) => {
    if (progress.part === undefined) return;
    if (!uploadIdReported && upload.uploadId) {
      uploadIdReported = true;
      opts.onUploadId?.(upload.uploadId);
    }
    const info = reader.partUploaded(progress.part);
    if (info) opts.onPartUploaded?.(info);
  });

  let settled = false;
  let abortReason: unknown;
  let orphanedUploadId: string | undefined;
  const abort = (reason?: unknown) => {
    if (settled || abortReason !== undefined) return;
    abortReason = reason ?? new CallvaultError(ErrorCode.Closed, 'upload aborted');
    if (!reader.readableEnded && !reader.allPushed) {
      // lib-storage's next read fails, and its own failure path aborts the multipart upload
      // before `upload.done()` rejects.
      reader.destroy(new CallvaultError(ErrorCode.Closed, 'upload aborted', { cause: abortReason }));
    } else {
      // Everything is handed over already; this skips CompleteMultipartUpload.
      void upload.abort();
    }
  };
  const onSignal = () => abort(opts.signal?.reason);
  if (opts.signal?.aborted) abort(opts.signal.reason);
  else opts.signal?.addEventListener('abort', onSignal, { once: true });

  const done = (async (): Promise<SpoolUploadResult> => {
    try {
      const result = await upload.done();
      return { size: reader.bytesPushed, ...(result.ETag ? { etag: result.ETag } : {}) };
    } catch (err) {
      const cleanupError = await abortMultipart(opts.client, opts.bucket, opts.key, upload.uploadId);
      if (cleanupError) orphanedUploadId = upload.uploadId;
      const aborted = abortReason !== undefined;
      const cause = aborted ? abortReason : (reader.failure ?? err);
      throw new CallvaultError(ErrorCode.UploadFailed, aborted ? 'upload aborted' : 'upload to object storage failed', {
        cause,
        retryable: !aborted && isRetryable(cause),
        details: {
          ...details,
          s3Error: errorName(err),
          status: httpStatus(err),
          ...(cleanupError ? { multipartAbortFailed: errorName(cleanupError) ?? String(cleanupError), uploadId: upload.uploadId } : {}),
        },
      });
    } finally {
      settled = true;
      opts.signal?.removeEventListener('abort', onSignal);
      reader.destroy();
      reader.releaseAll();
    }
  })();
  // A failure may come long before the caller awaits `done` (it typically waits for the call to
  // end first); that must not count as an unhandled rejection, which would kill the process.
  done.catch(() => undefined);
  return {
    done,
    abort,
    get orphanedUploadId() {
      return orphanedUploadId;
    },
  };
}

function isRetryable(cause: unknown): boolean {
  if (isCallvaultError(cause)) return cause.retryable;
  return isTransientS3Error(cause);
}

/**
 * lib-storage aborts on its own failure path, but not when done() lost a race with abort();
 * a second abort of the same upload id is harmless (NoSuchUpload), a dangling one costs money.
 */
export async function abortMultipart(
  client: S3Client,
  bucket: string,
  key: string,
  uploadId: string | undefined,
): Promise<unknown> {
  if (!uploadId) return undefined;
  try {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    return undefined;
  } catch (err) {
    return errorName(err) === 'NoSuchUpload' ? undefined : err;
  }
}

interface HeldPart {
  permit: PartPermit;
  bytes: number;
  readAt: number;
}

/**
 * A Readable that tails a spool file. It reads from disk only inside _read, only once a whole
 * part is available (or the spool is sealed), and only after the limiter granted a permit, so a
 * call waiting for audio or for a permit holds no part in memory.
 */
class SpoolTailReader extends Readable {
  private offset = 0;
  private partsPushed = 0;
  private ended = false;
  private handle: FileHandle | undefined;
  private readonly held = new Map<number, HeldPart>();
  private readonly stop = new AbortController();
  failure: unknown;

  constructor(
    private readonly spool: SpoolFile,
    private readonly partSize: number,
    private readonly limiter: PartLimiter,
    private readonly now: () => number,
  ) {
    // Only the part being cut needs to be in memory; never read further ahead than one push.
    super({ highWaterMark: 0 });
  }

  get bytesPushed(): number {
    return this.offset;
  }

  /** True once the last bytes and the end were pushed (lib-storage may not have read them yet). */
  get allPushed(): boolean {
    return this.ended;
  }

  override _read(): void {
    this.pushNextPart().catch((err: unknown) => {
      if (this.destroyed) return;
      this.failure = err;
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  }

  private async pushNextPart(): Promise<void> {
    const partNumber = this.partsPushed + 1;
    // lib-storage cuts part N once it holds more than partSize bytes: part N's end plus one byte.
    const target = partNumber * this.partSize + 1;
    await this.waitFor(() => this.spool.size >= target || this.spool.sealed);
    const permit = await this.limiter.acquire(this.stop.signal);
    if (this.destroyed) {
      permit.release();
      return;
    }
    const last = this.spool.size < target;
    const end = last ? this.spool.size : target;
    const bytes = last ? end - (partNumber - 1) * this.partSize : this.partSize;
    this.held.set(partNumber, { permit, bytes, readAt: this.now() });
    let chunk: Buffer;
    try {
      chunk = await this.readRange(this.offset, end);
    } catch (err) {
      throw new CallvaultError(ErrorCode.SpoolFailed, 'cannot read spool file for upload', {
        cause: err,
        details: { recordingId: this.spool.recordingId },
      });
    }
    if (this.destroyed) return;
    this.offset = end;
    this.partsPushed = partNumber;
    if (last) this.ended = true;
    if (chunk.length > 0) this.push(chunk);
    if (last) this.push(null);
  }

  /** Releases the part's permit; returns what onPartUploaded reports, once per part. */
  partUploaded(partNumber: number): PartUploadedInfo | undefined {
    const part = this.held.get(partNumber);
    if (!part) return undefined;
    this.held.delete(partNumber);
    part.permit.release();
    return { partNumber, bytes: part.bytes, seconds: (this.now() - part.readAt) / 1000 };
  }

  releaseAll(): void {
    for (const part of this.held.values()) part.permit.release();
    this.held.clear();
  }

  private async readRange(start: number, end: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(end - start);
    if (buffer.length === 0) return buffer;
    this.handle ??= await open(this.spool.path, 'r');
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await this.handle.read(buffer, filled, buffer.length - filled, start + filled);
      if (bytesRead === 0) throw new Error(`spool file shorter than its recorded size (${start + filled} < ${end})`);
      filled += bytesRead;
    }
    return buffer;
  }

  /** Resolves when `ready()` holds; rejects when the spool failed or the reader was destroyed. */
  private waitFor(ready: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let unsubscribe = () => {};
      const onStop = () => {
        unsubscribe();
        reject(this.stop.signal.reason);
      };
      const check = (): boolean => {
        if (this.stop.signal.aborted) return false;
        if (ready()) {
          unsubscribe();
          this.stop.signal.removeEventListener('abort', onStop);
          resolve();
          return true;
        }
        const spoolError = this.spool.error;
        if (spoolError) {
          unsubscribe();
          this.stop.signal.removeEventListener('abort', onStop);
          reject(spoolError);
          return true;
        }
        return false;
      };
      if (this.stop.signal.aborted) return reject(this.stop.signal.reason);
      if (check()) return;
      unsubscribe = this.spool.onChange(() => void check());
      this.stop.signal.addEventListener('abort', onStop, { once: true });
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.stop.abort(err ?? new CallvaultError(ErrorCode.Closed, 'spool reader closed'));
    // After a normal end (auto-destroy) the last part may still be sending: it keeps its permit
    // until lib-storage reports it. After a failure nothing more is reported, so release now.
    if (err) this.releaseAll();
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return callback(err);
    handle.close().then(
      () => callback(err),
      () => callback(err),
    );
  }
}
