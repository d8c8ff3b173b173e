import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import type { RecordingOptions } from '../config/index.js';
import {
  assertClientKeyStrong,
  createEncryptor,
  deriveClientDataKey,
  generateDataKey,
  generateSalt,
  wrapDataKey,
  type EncryptorState,
  type KeyMode,
} from '../crypto/index.js';
import { createCallDspState, type CallDspState, type InputFrame } from '../pipeline/index.js';
import { startSpoolUpload, type SpoolFile, type SpoolUpload } from '../storage/index.js';
import type { RecordingServices } from './services.js';

/** About this much audio per call goes to a worker in one hop; per-frame hops would drown in overhead. */
const BATCH_MEDIA_MS = 100;
/** A batch also leaves once its oldest frame has waited this long, so quiet calls still move. */
const BATCH_MAX_WAIT_MS = 200;
/** Frames a recording may hold while its workers are behind; past it the stream is told to back off. */
const MAX_PENDING_MEDIA_MS = 30_000;

export type RecordingSource = 'gateway' | 'livekit';
export type RecordingState = 'recording' | 'closing' | 'closed' | 'destroyed';

export interface RecordingParams {
  orgId: string;
  callId: string;
  callExternalId: string;
  source: RecordingSource;
  options: RecordingOptions & { enabled: true };
  metadata: Record<string, unknown>;
  /** Where on the call's media timeline (ms) this recording starts: never retroactive. Default 0. */
  originMs?: number;
  /** Only these tracks are recorded (e.g. just the inbound one); default all. */
  tracks?: readonly string[];
}

export type PauseBehavior = 'skip' | 'silence';

export interface PauseRecord {
  behavior: PauseBehavior;
  pausedAt: string;
  resumedAt: string | null;
  /** The paused span on the call's media timeline. */
  fromMediaMs: number;
  toMediaMs: number | null;
}

/** A synthetic track that carries the silence of a pause the call ended in, so the duration covers it. */
const PAUSE_SILENCE_TRACK = '__pause__';

export interface RecordingSummary {
  id: string;
  recordingSid: string;
  status: 'completed' | 'failed';
  durationMs: number;
  sizeBytes: number;
  objectKey: string;
}

interface RecordingEvents {
  closed: [RecordingSummary];
}

function frameMediaMs(frame: InputFrame): number {
  const bytesPerSample = frame.encoding === 'mulaw' ? 1 : 2;
  return (frame.data.byteLength / bytesPerSample / frame.sampleRate) * 1000;
}

/**
 * Copies the batch's payloads into one buffer. Payloads are often views into Node's shared 8 KiB pool,
 * and structured clone copies a view's whole backing buffer: one compact buffer crosses to the worker once.
 */
function packFrames(frames: InputFrame[]): InputFrame[] {
  let total = 0;
  for (const frame of frames) total += frame.data.byteLength;
  const packed = new Uint8Array(total);
  let offset = 0;
  return frames.map((frame) => {
    packed.set(frame.data, offset);
    const data = packed.subarray(offset, offset + frame.data.byteLength);
    offset += frame.data.byteLength;
    return { ...frame, data };
  });
}

/**
 * One encrypted recording of a call: frames in, batches through the worker pool, ciphertext appended to
 * the spool (the durable record of truth), multipart-uploaded from the spool while the call runs.
 * `close()` finishes and finalises; `destroy(err)` aborts the upload and marks it failed, keeping the spool.
 */
export class Recording extends EventEmitter<RecordingEvents> {
  readonly id: string;
  readonly recordingSid: string;
  readonly objectKey: string;
  readonly keyMode: KeyMode;
  readonly channels: 1 | 2;
  readonly #services: RecordingServices;
  readonly #abort = new AbortController();
  readonly #spoolFile: SpoolFile;
  readonly #upload: SpoolUpload;
  #dsp: CallDspState;
  #encryptor: EncryptorState;
  #pending: InputFrame[] = [];
  #pendingArrivals: number[] = [];
  #pendingMediaMs = 0;
  #inFlight: Promise<void> | null = null;
  #state: RecordingState = 'recording';
  #durationSamples = 0;
  #closePromise: Promise<RecordingSummary> | null = null;
  #failure: CallvaultError | null = null;
  readonly #originMs: number;
  readonly #trackFilter: ReadonlySet<string> | null;
  #pause: PauseRecord | null = null;
  readonly #pauses: PauseRecord[] = [];

  private constructor(
    services: RecordingServices,
    init: {
      id: string;
      recordingSid: string;
      objectKey: string;
      keyMode: KeyMode;
      channels: 1 | 2;
      spoolFile: SpoolFile;
      upload: SpoolUpload;
      dsp: CallDspState;
      encryptor: EncryptorState;
      originMs: number;
      tracks: readonly string[] | undefined;
    },
  ) {
    super();
    this.#services = services;
    this.id = init.id;
    this.recordingSid = init.recordingSid;
    this.objectKey = init.objectKey;
    this.keyMode = init.keyMode;
    this.channels = init.channels;
    this.#spoolFile = init.spoolFile;
    this.#upload = init.upload;
    this.#dsp = init.dsp;
    this.#encryptor = init.encryptor;
    this.#originMs = init.originMs;
    this.#trackFilter = init.tracks ? new Set(init.tracks) : null;
  }

  /**
   * Validates the options (a weak client key is refused here, before any audio is accepted), creates the
   * metadata row, the spool file with the container header, and the live upload.
   */
  static async start(services: RecordingServices, params: RecordingParams): Promise<Recording> {
    const keyMode: KeyMode = params.options.key === undefined ? 'server' : 'client';
    if (params.options.key !== undefined) assertClientKeyStrong(params.options.key);
    const channels: 1 | 2 = params.options.stereo === false ? 1 : 2;
    const salt = generateSalt();
    const dataKey = keyMode === 'server' ? generateDataKey() : deriveClientDataKey(params.options.key as string, salt);
    const keyId = keyMode === 'server' ? services.keyring.currentId : '';
    const wrappedKey = keyMode === 'server' ? wrapDataKey(services.keyring.current, keyId, dataKey) : undefined;
    const startedAt = new Date(services.now());
    const { header, state: encryptor } = createEncryptor({
      dataKey,
      keyMode,
      keyId,
      salt,
      sampleRate: services.outputSampleRate,
      channels,
    });

    const day = startedAt.toISOString().slice(0, 10).replaceAll('-', '/');
    // Object names carry no secret and no guessable sequence: organisation, day, call, random id.
    const objectKey = `${params.orgId}/${day}/${params.callExternalId}/${randomUUID()}.cvr`;
    const row = await services.db.recordings.create({
      orgId: params.orgId,
      callId: params.callId,
      source: params.source,
      channels,
      sampleRate: services.outputSampleRate,
      format: 'cvr1',
      mediaType: 'application/vnd.callvault.recording',
      bucket: services.bucket,
      objectKey,
      keyMode,
      keyId: keyMode === 'server' ? keyId : undefined,
      wrappedKey,
      startedAt,
      metadata: params.metadata,
    });

    let spoolFile: SpoolFile | undefined;
    try {
      spoolFile = await services.spool.create(row.id, {
        recordingId: row.id,
        recordingSid: row.recordingSid,
        orgId: params.orgId,
        bucket: services.bucket,
        objectKey,
        createdAt: startedAt.toISOString(),
      });
      await spoolFile.append(header);
    } catch (err) {
      // The row exists already: say why it never recorded instead of leaving it in progress for good.
      const error = toCallvaultError(err, ErrorCode.SpoolFailed);
      await spoolFile?.remove().catch(() => undefined);
      await services.db.recordings.fail(row.id, { errorCode: error.code, endedAt: new Date(services.now()) }).catch(() => undefined);
      throw error;
    }
    const metrics = services.metrics;
    const upload = startSpoolUpload({
      client: services.s3,
      bucket: services.bucket,
      key: objectKey,
      spoolFile,
      partSize: services.partSize,
      limiter: services.partLimiter,
      contentType: 'application/vnd.callvault.recording',
      metadata: { 'recording-sid': row.recordingSid, 'key-mode': keyMode },
      onPartUploaded: (info) => {
        metrics.partUploadDuration.observe(info.seconds);
        metrics.uploadedBytes.inc(info.bytes);
      },
    });
    const recording = new Recording(services, {
      id: row.id,
      recordingSid: row.recordingSid,
      objectKey,
      keyMode,
      channels,
      spoolFile,
      upload,
      dsp: createCallDspState({ outputRate: services.outputSampleRate, stereo: channels === 2 }),
      encryptor,
      originMs: params.originMs ?? 0,
      tracks: params.tracks,
    });
    // An upload that fails mid-call has already aborted its multipart upload; the spool keeps the audio.
    upload.done.catch((err: unknown) => recording.destroy(toCallvaultError(err, ErrorCode.UploadFailed)));
    metrics.activeRecordings.inc();
    return recording;
  }

  get state(): RecordingState {
    return this.#state;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get paused(): boolean {
    return this.#pause !== null;
  }

  get pauses(): readonly PauseRecord[] {
    return this.#pauses;
  }

  /**
   * Queues a frame (positioned on the call's media timeline) for the pipeline. Frames of other tracks, audio
   * from before this recording started, and audio positioned inside a pause never reach storage, whenever
   * the frame happens to arrive. Throws OVERLOADED when the workers are too far behind to keep up.
   */
  push(callFrame: InputFrame, arrivedAt: number): void {
    if (this.#state !== 'recording') return;
    if (this.#trackFilter && !this.#trackFilter.has(callFrame.trackId)) return;
    for (const frame of this.#toRecordingTimeline(callFrame)) {
      this.#pending.push(frame);
      this.#pendingArrivals.push(arrivedAt);
      this.#pendingMediaMs += frameMediaMs(frame);
    }
    if (this.#pendingMediaMs > MAX_PENDING_MEDIA_MS) {
      throw new CallvaultError(ErrorCode.Overloaded, 'recording pipeline is too far behind', { retryable: true });
    }
    if (this.#pendingMediaMs >= BATCH_MEDIA_MS) this.#pump();
  }

  /** A pause as a span of input samples at `perMs` samples per ms; an open pause runs to infinity. */
  static #span(pause: PauseRecord, perMs: number): [number, number] {
    return [Math.round(pause.fromMediaMs * perMs), pause.toMediaMs === null ? Infinity : Math.round(pause.toMediaMs * perMs)];
  }

  /** Samples removed by closed `skip` pauses that end at or before `position` (call timeline). */
  #skippedBefore(position: number, perMs: number): number {
    let skipped = 0;
    for (const pause of this.#pauses) {
      if (pause.behavior !== 'skip' || pause.toMediaMs === null) continue;
      const [from, to] = Recording.#span(pause, perMs);
      if (to <= position) skipped += to - from;
    }
    return skipped;
  }

  /**
   * Moves a frame from the call's timeline onto this recording's: cuts what precedes the origin and what
   * falls inside any pause (by position, so a lagging track's paused audio is dropped even if it arrives
   * after the resume, and its audio from before the pause is kept even if it arrives during it), then
   * shifts what remains left by the `skip` pauses before it.
   */
  #toRecordingTimeline(frame: InputFrame): InputFrame[] {
    const perMs = frame.sampleRate / 1000;
    const bytesPerSample = frame.encoding === 'mulaw' ? 1 : 2;
    const origin = Math.round(this.#originMs * perMs);
    const start = frame.position;
    const end = start + frame.data.byteLength / bytesPerSample;
    if (this.#pauses.length === 0 && start >= origin) {
      return [origin === 0 ? frame : { ...frame, position: start - origin }];
    }
    let pieces: Array<[number, number]> = [[Math.max(start, origin), end]];
    for (const pause of this.#pauses) {
      const [from, to] = Recording.#span(pause, perMs);
      pieces = pieces.flatMap(([a, b]): Array<[number, number]> =>
        b <= from || a >= to ? [[a, b]] : ([[a, Math.min(b, from)], [Math.max(a, to), b]] as Array<[number, number]>).filter(([x, y]) => y > x),
      );
    }
    return pieces
      .filter(([a, b]) => b > a)
      .map(([a, b]) => ({
        ...frame,
        position: a - origin - this.#skippedBefore(a, perMs),
        data: frame.data.subarray((a - start) * bytesPerSample, (b - start) * bytesPerSample),
      }));
  }

  /**
   * While paused, no audio reaches the pipeline or storage (PCI). `silence` keeps the paused span on the
   * timeline as silence; `skip` removes it, so what follows the resume joins what preceded the pause.
   */
  pauseAt(behavior: PauseBehavior, mediaMs: number): PauseRecord {
    if (this.#state !== 'recording') throw new CallvaultError(ErrorCode.Conflict, 'recording is not in progress');
    if (this.#pause) throw new CallvaultError(ErrorCode.Conflict, 'recording is already paused');
    const pause: PauseRecord = {
      behavior,
      pausedAt: new Date(this.#services.now()).toISOString(),
      resumedAt: null,
      fromMediaMs: Math.max(mediaMs, this.#originMs),
      toMediaMs: null,
    };
    this.#pause = pause;
    this.#pauses.push(pause);
    this.#persistPauses();
    return pause;
  }

  resumeAt(mediaMs: number): PauseRecord {
    const pause = this.#pause;
    if (this.#state !== 'recording') throw new CallvaultError(ErrorCode.Conflict, 'recording is not in progress');
    if (!pause) throw new CallvaultError(ErrorCode.Conflict, 'recording is not paused');
    this.#endPause(pause, mediaMs);
    this.#persistPauses();
    return pause;
  }

  #endPause(pause: PauseRecord, mediaMs: number): void {
    pause.toMediaMs = Math.max(mediaMs, pause.fromMediaMs);
    pause.resumedAt = new Date(this.#services.now()).toISOString();
    this.#pause = null;
  }

  #persistPauses(): void {
    const services = this.#services;
    services.db.recordings
      .mergeMetadata(this.id, { pauses: this.#pauses })
      .catch((err: unknown) => services.logger.error({ recordingSid: this.recordingSid, err }, 'could not store pauses'));
  }

  /** Called periodically by the gateway so that a slow trickle of frames still leaves in bounded time. */
  flushIfDue(now: number): void {
    const oldest = this.#pendingArrivals[0];
    if (this.#state === 'recording' && oldest !== undefined && now - oldest >= BATCH_MAX_WAIT_MS) this.#pump();
  }

  #pump(final = false): Promise<void> {
    if (this.#inFlight) return this.#inFlight;
    if (this.#pending.length === 0 && !final) return Promise.resolve();
    const frames = packFrames(this.#pending);
    const arrivals = this.#pendingArrivals;
    this.#pending = [];
    this.#pendingArrivals = [];
    this.#pendingMediaMs = 0;
    const services = this.#services;
    const run = async (): Promise<void> => {
      const result = await services.pool.run({ dsp: this.#dsp, encryptor: this.#encryptor, frames, final });
      if (this.#state === 'destroyed') return;
      this.#dsp = result.dsp;
      this.#encryptor = result.encryptor;
      this.#durationSamples = result.stats.durationSamples;
      if (result.stats.duplicateSamplesDropped > 0) {
        services.metrics.framesDropped.inc({ source: 'pipeline', reason: 'duplicate' }, result.stats.duplicateSamplesDropped);
      }
      if (result.stats.lateSamplesDropped > 0) {
        services.metrics.framesDropped.inc({ source: 'pipeline', reason: 'late' }, result.stats.lateSamplesDropped);
      }
      if (result.output.byteLength > 0) await this.#spoolFile.append(result.output);
      const now = services.now();
      for (const arrivedAt of arrivals) services.metrics.pipelineLatency.observe((now - arrivedAt) / 1000);
    };
    const inFlight = run()
      .catch((err: unknown) => {
        this.destroy(toCallvaultError(err, ErrorCode.PipelineFailed));
      })
      .finally(() => {
        this.#inFlight = null;
        if (this.#state === 'recording' && this.#pendingMediaMs >= BATCH_MEDIA_MS) void this.#pump();
      });
    this.#inFlight = inFlight;
    return inFlight;
  }

  /**
   * Finishes: flushes every pending frame, seals the container, completes the upload and the metadata.
   * `mediaEndMs` is where the call's media timeline stands; a `silence` pause still open there extends the
   * recording with silence up to it.
   */
  close(mediaEndMs?: number): Promise<RecordingSummary> {
    if (this.#closePromise) return this.#closePromise;
    const pause = this.#pause;
    if (pause && this.#state === 'recording') {
      const end = Math.max(mediaEndMs ?? pause.fromMediaMs, pause.fromMediaMs);
      this.#endPause(pause, end);
      this.#persistPauses();
      if (pause.behavior === 'silence' && end > pause.fromMediaMs) {
        const rate = 8000;
        const pauseStart = Math.round((pause.fromMediaMs * rate) / 1000);
        const samples = Math.round(((end - pause.fromMediaMs) * rate) / 1000);
        this.#pending.push({
          trackId: PAUSE_SILENCE_TRACK,
          role: 'caller',
          encoding: 'pcm_s16le',
          sampleRate: rate,
          position: pauseStart - Math.round((this.#originMs * rate) / 1000) - this.#skippedBefore(pauseStart, rate / 1000),
          data: new Uint8Array(samples * 2),
        });
        this.#pendingArrivals.push(this.#services.now());
      }
    }
    this.#closePromise = this.#finish();
    return this.#closePromise;
  }

  async #finish(): Promise<RecordingSummary> {
    const services = this.#services;
    const stoppedAt = services.now();
    if (this.#state === 'recording') this.#state = 'closing';
    while (this.#inFlight) await this.#inFlight;
    if (this.#state === 'closing') await this.#pump(true);
    if (this.#state === 'closing') {
      try {
        await this.#spoolFile.seal();
        const { size } = await this.#upload.done;
        // A destroy() while the upload finished wins: it has aborted the upload and marked the row failed.
        if (this.#state !== 'closing') throw this.#failure ?? new CallvaultError(ErrorCode.Destroyed, 'recording destroyed');
        const durationMs = Math.round((this.#durationSamples / services.outputSampleRate) * 1000);
        // From here the object is complete in S3: a destroy() can no longer undo it, so it becomes a no-op.
        this.#committing = true;
        await services.db.recordings.complete(this.id, { durationMs, sizeBytes: size, endedAt: new Date(services.now()) });
        await this.#spoolFile.remove();
        this.#state = 'closed';
        this.#settle('completed');
        services.metrics.finalizationLatency.observe((services.now() - stoppedAt) / 1000);
        services.logger.info({ recordingSid: this.recordingSid, durationMs, sizeBytes: size }, 'recording completed');
        const summary: RecordingSummary = {
          id: this.id,
          recordingSid: this.recordingSid,
          status: 'completed',
          durationMs,
          sizeBytes: size,
          objectKey: this.objectKey,
        };
        this.#emitClosed(summary);
        return summary;
      } catch (err) {
        this.#committing = false;
        this.destroy(toCallvaultError(err, ErrorCode.UploadFailed));
      }
    }
    await this.#failWrite;
    const summary = this.#failedSummary();
    this.#emitClosed(summary);
    return summary;
  }

  /** Gauges and counters move exactly once per recording, however it ends. */
  #settle(status: 'completed' | 'failed'): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#services.metrics.activeRecordings.dec();
    this.#services.metrics.recordingsFinished.inc({ status });
  }

  /** Resolves once the recording's outcome is in the database, whichever way it ended. */
  get settled(): Promise<void> {
    return (this.#closePromise ?? Promise.resolve()).then(
      () => this.#failWrite,
      () => this.#failWrite,
    );
  }

  #closedEmitted = false;
  #settled = false;
  #committing = false;
  #failWrite: Promise<void> = Promise.resolve();

  #failedSummary(): RecordingSummary {
    return {
      id: this.id,
      recordingSid: this.recordingSid,
      status: 'failed',
      durationMs: Math.round((this.#durationSamples / this.#services.outputSampleRate) * 1000),
      sizeBytes: this.#spoolFile.size,
      objectKey: this.objectKey,
    };
  }

  /** 'closed' fires exactly once, whether the recording finished or was destroyed. */
  #emitClosed(summary: RecordingSummary): void {
    if (this.#closedEmitted) return;
    this.#closedEmitted = true;
    this.emit('closed', summary);
  }

  /**
   * Aborts: the multipart upload is aborted (no dangling parts), the row is marked failed with the error's
   * code, and the spool file stays on disk as the record of truth for a later retry.
   */
  destroy(err: CallvaultError = new CallvaultError(ErrorCode.Destroyed, 'recording destroyed')): void {
    if (this.#state === 'destroyed' || this.#state === 'closed' || this.#committing) return;
    const services = this.#services;
    this.#state = 'destroyed';
    this.#failure = err;
    this.#pending = [];
    this.#pendingArrivals = [];
    this.#abort.abort(err);
    this.#upload.abort(err);
    // The spool stays as the record of truth: seal it so it is final on disk and its handle is released.
    void this.#spoolFile.seal().catch(() => undefined);
    this.#settle('failed');
    if (err.code === ErrorCode.UploadFailed) services.metrics.partUploadFailures.inc();
    services.logger.error({ recordingSid: this.recordingSid, code: err.code, err }, 'recording failed');
    this.#failWrite = services.db.recordings
      .fail(this.id, { errorCode: err.code, endedAt: new Date(services.now()) })
      .then(
        () => undefined,
        (dbErr: unknown) => services.logger.error({ recordingSid: this.recordingSid, err: dbErr }, 'could not mark recording failed'),
      );
    // A destroy during close() is reported by close() itself, once the pipeline has stopped.
    if (!this.#closePromise) {
      this.#emitClosed(this.#failedSummary());
    }
  }

  get failure(): CallvaultError | null {
    return this.#failure;
  }
}
