/**
 * Where a recording's ciphertext goes: appended to its spool file (the local record of truth), streamed
 * from there to S3 as a multipart upload while it grows, and retried from the spool's first byte for as
 * long as S3 is away. Live recordings, imports and recovered recordings all leave through here.
 */
import { ErrorCode, toCallvaultError, type CallvaultError } from '../errors/index.js';
import type { KeyMode } from '../crypto/index.js';
import { abortMultipart, startSpoolUpload, type SpoolFile, type SpoolUpload, type SpoolUploadResult } from '../storage/index.js';
import { DEFAULT_RETRY, retryDelayMs, sleep } from './retry.js';
import type { RecordingManifest } from './envelope.js';
import type { RecordingServices } from './services.js';

/** A sealed recording still uploading after this long is shown as `uploading` (S3 slow or away). */
export const UPLOADING_AFTER_MS = 1000;

export interface SpoolUploadTarget {
  recordingId: string;
  recordingSid: string;
  objectKey: string;
  keyMode: KeyMode;
  spoolFile: SpoolFile;
  signal: AbortSignal;
  onAttempt?(upload: SpoolUpload): void;
  /** Called once, when the first attempt fails: from then on the recording waits in the backlog. */
  onBacklogged?(): void;
}

/**
 * Uploads a spool file, starting again from its first byte after every failure, with exponential backoff
 * and jitter and no limit of time: S3 being away for minutes delays a recording, it never loses it. Each
 * attempt's multipart UploadId is added to the row's open uploads when it starts and removed once it is
 * aborted; an attempt whose abort failed (S3 away) stays listed, and is aborted by id once S3 answers again,
 * here or, after a crash, by recovery. Rejects only when `signal` aborts (the recording was destroyed,
 * deleted or left for the next start).
 */
export async function uploadSpoolUntilDone(services: RecordingServices, target: SpoolUploadTarget): Promise<SpoolUploadResult> {
  const { initialDelayMs, maxDelayMs } = services.retry ?? DEFAULT_RETRY;
  const metrics = services.metrics;
  const log = { recordingSid: target.recordingSid };
  let waiting = false;
  /** Multipart uploads of failed attempts that could not be aborted while S3 was away (also in the row). */
  const orphans = new Set<string>();
  try {
    for (let attempt = 0; ; attempt++) {
      if (target.signal.aborted) throw target.signal.reason;
      let attemptUploadId: string | undefined;
      const upload = startSpoolUpload({
        client: services.s3,
        bucket: services.bucket,
        key: target.objectKey,
        spoolFile: target.spoolFile,
        partSize: services.partSize,
        limiter: services.partLimiter,
        contentType: 'application/vnd.callvault.recording',
        metadata: { 'recording-sid': target.recordingSid, 'key-mode': target.keyMode },
        signal: target.signal,
        onPartUploaded: (info) => {
          metrics.partUploadDuration.observe(info.seconds);
          metrics.uploadedBytes.inc(info.bytes);
        },
        onUploadId: (uploadId) => {
          attemptUploadId = uploadId;
          services.db.recordings
            .setUploadId(target.recordingId, uploadId)
            .catch((err: unknown) => services.logger.error({ ...log, code: toCallvaultError(err).code, err }, 'could not store the upload id'));
        },
      });
      target.onAttempt?.(upload);
      try {
        const result = await upload.done;
        // S3 answers again: what the outage left open goes now, so no orphaned parts are billed for good.
        await abortOrphans(services, target, orphans, attemptUploadId);
        return result;
      } catch (err) {
        if (upload.orphanedUploadId) orphans.add(upload.orphanedUploadId);
        else if (attemptUploadId) forgetUploads(services, target, [attemptUploadId]);
        if (target.signal.aborted) throw target.signal.reason;
        const error = toCallvaultError(err, ErrorCode.UploadFailed);
        metrics.partUploadFailures.inc();
        metrics.uploadRetries.inc();
        if (!waiting) {
          waiting = true;
          metrics.uploadBacklog.add(target.spoolFile);
          target.onBacklogged?.();
        }
        const delayMs = retryDelayMs(attempt, initialDelayMs, maxDelayMs);
        services.logger.warn({ ...log, code: error.code, attempt, delayMs: Math.round(delayMs), err: error }, 'upload failed, retrying from the spool');
        await sleep(delayMs, target.signal);
      }
    }
  } finally {
    if (waiting) metrics.uploadBacklog.delete(target.spoolFile);
    if (orphans.size > 0) {
      // Still listed in the row: the next start (recovery) or a DELETE aborts them by id.
      services.logger.error({ ...log, objectKey: target.objectKey, uploadIds: [...orphans] }, 'multipart uploads left open in S3');
    }
  }
}

/** The row forgets uploads that are aborted; a failed write only leaves an id that aborts as NoSuchUpload later. */
function forgetUploads(services: RecordingServices, target: SpoolUploadTarget, uploadIds: string[]): void {
  services.db.recordings
    .closeUploadIds(target.recordingId, uploadIds)
    .catch((err: unknown) => services.logger.warn({ recordingSid: target.recordingSid, code: toCallvaultError(err).code, err }, 'could not forget aborted upload ids'));
}

/** Attempts per orphaned multipart upload once S3 answers again; S3 just took the object, so one usually does. */
const ORPHAN_ABORT_ATTEMPTS = 3;

/**
 * Aborts the multipart uploads earlier attempts left open: those this process saw, and those the row lists
 * (a previous process's, before a crash), except `completed`. Those it cannot abort stay in `orphans`.
 */
async function abortOrphans(services: RecordingServices, target: SpoolUploadTarget, orphans: Set<string>, completed: string | undefined): Promise<void> {
  const listed = await services.db.recordings.openUploadIds(target.recordingId).catch((err: unknown) => {
    services.logger.warn({ recordingSid: target.recordingSid, code: toCallvaultError(err).code, err }, 'could not read the open upload ids');
    return [] as string[];
  });
  for (const uploadId of listed) if (uploadId !== completed) orphans.add(uploadId);
  const { initialDelayMs, maxDelayMs } = services.retry ?? DEFAULT_RETRY;
  for (const uploadId of [...orphans]) {
    for (let attempt = 0; attempt < ORPHAN_ABORT_ATTEMPTS; attempt++) {
      const err = await abortMultipart(services.s3, services.bucket, target.objectKey, uploadId);
      if (!err) {
        orphans.delete(uploadId);
        forgetUploads(services, target, [uploadId]);
        services.logger.info({ recordingSid: target.recordingSid, uploadId }, 'multipart upload of a failed attempt aborted');
        break;
      }
      services.logger.warn({ recordingSid: target.recordingSid, uploadId, attempt, err }, 'could not abort the multipart upload of a failed attempt');
      if (attempt + 1 < ORPHAN_ABORT_ATTEMPTS) {
        const slept = await sleep(retryDelayMs(attempt, initialDelayMs, maxDelayMs), target.signal).then(
          () => true,
          () => false,
        );
        if (!slept) return;
      }
    }
  }
}

/**
 * Aborts every multipart upload the row lists as possibly open (recovery after a crash, DELETE) and forgets
 * those aborted. Returns the first error when one could not be aborted (it stays listed).
 */
export async function abortOpenUploads(services: RecordingServices, recordingId: string, bucket: string, objectKey: string): Promise<unknown> {
  const uploadIds = await services.db.recordings.openUploadIds(recordingId);
  const aborted: string[] = [];
  let failure: unknown;
  for (const uploadId of uploadIds) {
    const err = await abortMultipart(services.s3, bucket, objectKey, uploadId);
    if (err) failure ??= err;
    else aborted.push(uploadId);
  }
  if (aborted.length > 0) await services.db.recordings.closeUploadIds(recordingId, aborted);
  return failure;
}

export interface DurableSinkParams {
  manifest: RecordingManifest;
  /** The container header: the first bytes of the spool file and of the object. */
  header: Uint8Array;
  /** Seal the data file right after the header is written: the caller appended everything already. */
  body?: Uint8Array;
  /** The upload waits in the backlog (its first attempt failed). */
  onBacklogged?(): void;
  /** The owner's lifetime (e.g. the gateway's): when it aborts, the upload stops and the spool is kept. */
  signal?: AbortSignal;
}

export class DurableSink {
  readonly #services: RecordingServices;
  readonly #manifest: RecordingManifest;
  readonly #file: SpoolFile;
  readonly #abort = new AbortController();
  #upload: SpoolUpload | null = null;
  readonly #uploaded: Promise<SpoolUploadResult>;
  /** Stops listening to the owner's signal once the sink has an outcome. */
  #detach: () => void = () => undefined;

  private constructor(services: RecordingServices, manifest: RecordingManifest, file: SpoolFile, onBacklogged?: () => void) {
    this.#services = services;
    this.#manifest = manifest;
    this.#file = file;
    this.#uploaded = uploadSpoolUntilDone(services, {
      recordingId: manifest.recordingId,
      recordingSid: manifest.recordingSid,
      objectKey: manifest.objectKey,
      keyMode: manifest.keyMode,
      spoolFile: file,
      signal: this.#abort.signal,
      onAttempt: (upload) => (this.#upload = upload),
      ...(onBacklogged ? { onBacklogged } : {}),
    });
    // Rejects only when the sink is aborted; whoever aborts it decides the recording's outcome.
    this.#uploaded.catch(() => undefined);
  }

  /** Creates the spool file with its manifest and header (made durable), and starts the live upload. */
  static async open(services: RecordingServices, params: DurableSinkParams): Promise<DurableSink> {
    const file = await services.spool.create(params.manifest.recordingId, params.manifest as unknown as Record<string, unknown>);
    try {
      await file.append(params.header);
      if (params.body) {
        await file.append(params.body);
        await file.seal();
      }
    } catch (err) {
      await file.remove().catch((rmErr: unknown) => services.logger.error({ recordingId: params.manifest.recordingId, err: rmErr }, 'could not remove the spool file'));
      throw toCallvaultError(err, ErrorCode.SpoolFailed);
    }
    const sink = new DurableSink(services, params.manifest, file, params.onBacklogged);
    const owner = params.signal;
    if (owner) {
      const onOwnerAbort = () => sink.release(toCallvaultError(owner.reason, ErrorCode.ShuttingDown));
      if (owner.aborted) onOwnerAbort();
      else {
        owner.addEventListener('abort', onOwnerAbort, { once: true });
        sink.#detach = () => owner.removeEventListener('abort', onOwnerAbort);
      }
    }
    return sink;
  }

  get file(): SpoolFile {
    return this.#file;
  }

  get size(): number {
    return this.#file.size;
  }

  /** Aborted when the sink is: wired to the upload and its retries. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  append(bytes: Uint8Array): Promise<void> {
    return this.#file.append(bytes);
  }

  /**
   * Seals the data file and waits until S3 holds all of it, however long that takes. `onSlow` is called
   * once if the upload is not done UPLOADING_AFTER_MS after sealing (the audio is complete, S3 is behind).
   */
  async finish(onSlow?: () => void): Promise<SpoolUploadResult> {
    if (!this.#file.sealed) await this.#file.seal();
    if (!onSlow) return this.#uploaded;
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => (timer = setTimeout(resolve, UPLOADING_AFTER_MS, 'slow')));
    try {
      if ((await Promise.race([this.#uploaded, slow])) === 'slow') onSlow();
      return await this.#uploaded;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stops uploading and keeps the spool as the record of truth (retried on the next start or by the retry
   * route): the data file is sealed, so it is final on disk and its handle released.
   */
  release(reason: CallvaultError): void {
    this.#detach();
    this.#abort.abort(reason);
    this.#upload?.abort(reason);
    void this.#file.seal().catch((err: unknown) => {
      // Already failed or removed: the journal, not the data file, is what recovery of a live recording reads.
      if (toCallvaultError(err).code === ErrorCode.Closed) return;
      this.#services.logger.error({ recordingSid: this.#manifest.recordingSid, err }, 'could not seal the spool file');
    });
  }

  /** The recording never started: its upload stops and its spool goes. */
  async discard(reason: CallvaultError): Promise<void> {
    this.#detach();
    this.#abort.abort(reason);
    this.#upload?.abort(reason);
    await this.#file.remove();
  }

  /** The object is complete and its row says so: the spool (data, manifest, journal) goes. */
  remove(): Promise<void> {
    this.#detach();
    return this.#file.remove();
  }
}
