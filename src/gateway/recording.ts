/**
 * One encrypted recording of a call, as a small state machine over its parts:
 *
 *   recording ──close()──▶ closing ──▶ closed        (completed in S3 and PostgreSQL, spool removed)
 *       │                     │
 *       └──destroy(err)───────┴──▶ destroyed         (failed; spool kept for a retry)
 *       └──abandon()──────────┴──▶ abandoned         (shutdown ran out of time; the next start finishes it)
 *
 * The parts: the envelope (keys, header, object name — envelope.ts), the timeline (origin, pauses, gaps —
 * timeline.ts), the batcher (journal first, batches to the workers, catch-up — batcher.ts) and the durable
 * sink (spool → upload — durable-sink.ts). `closed` is emitted exactly once, however it ends.
 */
import { EventEmitter } from 'node:events';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import type { RecordingOptions } from '../config/index.js';
import type { KeyMode } from '../crypto/index.js';
import { createCallDspState, type InputFrame } from '../pipeline/index.js';
import type { PipelineSession } from '../pipeline/pool.js';
import { JournalWriter } from '../storage/index.js';
import type { SessionBatchResult } from '../pipeline/pool.js';
import { rebuildSession } from './pipeline-replay.js';
import { FrameBatcher } from './batcher.js';
import { DurableSink } from './durable-sink.js';
import { SpoolCheckpointer } from './checkpoint.js';
import { openEnvelope, recordingManifest } from './envelope.js';
import { retryWhileRetryable } from './retry.js';
import type { RecordingServices } from './services.js';
import type { ArtifactClientKey } from './artifact-key.js';
import { RecordingTimeline, type PauseBehavior, type PauseRecord } from './timeline.js';

export { retryWhileRetryable, retryDelayMs, DEFAULT_RETRY } from './retry.js';
export { uploadSpoolUntilDone, type SpoolUploadTarget } from './durable-sink.js';
export { manifestDataKey, RECOVERABLE_MANIFEST_VERSION, type RecordingManifest } from './envelope.js';
export type { PauseBehavior, PauseRecord } from './timeline.js';

/** A batch that fails this many times in a row means the pipeline cannot process this call at all. */
const MAX_CONSECUTIVE_PIPELINE_FAILURES = 3;

export type RecordingSource = 'gateway' | 'livekit';
export type RecordingState = 'recording' | 'closing' | 'closed' | 'destroyed' | 'abandoned';

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

export interface RecordingSummary {
  id: string;
  recordingSid: string;
  /** `interrupted`: left in the spool at shutdown, to be finished by the next start. */
  status: 'completed' | 'failed' | 'interrupted';
  /** Why a failed recording failed (the close reason its stream gets). */
  errorCode?: string;
  durationMs: number;
  sizeBytes: number;
  objectKey: string;
}

interface RecordingEvents {
  closed: [RecordingSummary];
}

interface RecordingParts {
  id: string;
  recordingSid: string;
  objectKey: string;
  keyMode: KeyMode;
  channels: 1 | 2;
  sink: DurableSink;
  journal: JournalWriter;
  checkpointer: SpoolCheckpointer | null;
  session: PipelineSession;
  /** Where the spool's container body starts (after the header): a rebuild checks what follows. */
  headerBytes: number;
  timeline: RecordingTimeline;
  tracks: readonly string[] | undefined;
  clientKey: ArtifactClientKey | null;
}

export class Recording extends EventEmitter<RecordingEvents> {
  readonly id: string;
  readonly recordingSid: string;
  readonly objectKey: string;
  readonly keyMode: KeyMode;
  readonly channels: 1 | 2;
  /**
   * Client key mode: the data key derived from the client key (and the salt and scrypt parameters of its
   * header), which the call seals its transcript, events and metadata under when it ends. Null in server mode.
   */
  readonly clientKey: ArtifactClientKey | null;
  readonly #services: RecordingServices;
  readonly #sink: DurableSink;
  readonly #journal: JournalWriter;
  /** The row's metadata writes (pauses, gaps), chained so they land in the order they were made. */
  #metadataWrites: Promise<void> = Promise.resolve();
  /** Spool checkpoints to S3 (SPOOL_CHECKPOINT_SECONDS), or null when off or the data key is not kept. */
  readonly #checkpointer: SpoolCheckpointer | null;
  readonly #batcher: FrameBatcher;
  readonly #timeline: RecordingTimeline;
  readonly #trackFilter: ReadonlySet<string> | null;
  /** The worker thread that holds this recording's DSP and encryptor state. */
  readonly #session: PipelineSession;
  readonly #headerBytes: number;
  /** Journal frames that a batch failed on (recorded as gaps): a rebuild leaves them out, as the batch did. */
  readonly #lostRanges: Array<[from: number, to: number]> = [];
  #durationSamples = 0;
  #pipelineFailures = 0;
  #state: RecordingState = 'recording';
  #closePromise: Promise<RecordingSummary> | null = null;
  #failure: CallvaultError | null = null;
  /** The row write of a failure; `settled` waits for it. */
  #failWrite: Promise<void> = Promise.resolve();
  #closedEmitted = false;
  #settled = false;
  /** From here the object is complete in S3: a destroy() can no longer undo it, so it becomes a no-op. */
  #committing = false;

  private constructor(services: RecordingServices, parts: RecordingParts) {
    super();
    this.#services = services;
    this.id = parts.id;
    this.recordingSid = parts.recordingSid;
    this.objectKey = parts.objectKey;
    this.keyMode = parts.keyMode;
    this.channels = parts.channels;
    this.clientKey = parts.clientKey;
    this.#sink = parts.sink;
    this.#journal = parts.journal;
    this.#checkpointer = parts.checkpointer;
    this.#session = parts.session;
    this.#headerBytes = parts.headerBytes;
    this.#timeline = parts.timeline;
    this.#trackFilter = parts.tracks ? new Set(parts.tracks) : null;
    this.#batcher = new FrameBatcher(parts.journal, (frames, final, arrivals, journalFrom) => this.#runBatch(frames, final, arrivals, journalFrom), {
      onFailure: (err) => this.destroy(err),
      onCatchUpStarted: () => services.logger.warn({ recordingSid: this.recordingSid }, 'stream ahead of the pipeline, catching up from the journal'),
    }, services.batcherLimits);
  }

  /**
   * Validates the options (a weak client key is refused here, before any audio is accepted), creates the
   * metadata row, the spool (manifest, container header, frame journal) and the live upload.
   */
  static async start(services: RecordingServices, params: RecordingParams): Promise<Recording> {
    const channels: 1 | 2 = params.options.stereo === true ? 2 : 1;
    const startedAt = new Date(services.now());
    const envelope = await openEnvelope(services, {
      orgId: params.orgId,
      callExternalId: params.callExternalId,
      ...(params.options.key !== undefined ? { clientKey: params.options.key } : {}),
      startedAt,
      sampleRate: services.outputSampleRate,
      channels,
    });
    const row = await services.db.recordings.create({
      orgId: params.orgId,
      callId: params.callId,
      source: params.source,
      channels,
      sampleRate: services.outputSampleRate,
      format: 'cvr1',
      mediaType: 'application/vnd.callvault.recording',
      bucket: services.bucket,
      objectKey: envelope.objectKey,
      keyMode: envelope.keyMode,
      keyId: envelope.keyMode === 'server' ? envelope.keyId : undefined,
      wrappedKey: envelope.keyMode === 'server' ? envelope.wrappedKey : undefined,
      startedAt,
      metadata: params.metadata,
      ownerGateway: services.gatewayId,
    });
    const manifest = recordingManifest(services, envelope, {
      recordingId: row.id,
      recordingSid: row.recordingSid,
      orgId: params.orgId,
      callDbId: params.callId,
      callExternalId: params.callExternalId,
      sampleRate: services.outputSampleRate,
      channels,
      startedAt,
    });
    let sink: DurableSink | undefined;
    let journal: JournalWriter;
    try {
      sink = await DurableSink.open(services, { manifest, header: envelope.header });
      journal = await JournalWriter.create({
        path: services.spool.journalPath(row.id),
        recordingId: row.id,
        dataKey: envelope.dataKey,
        ...(services.commitLog ? { commitLog: services.commitLog } : {}),
      });
    } catch (err) {
      // The row exists already: say why it never recorded instead of leaving it in progress for good.
      const error = toCallvaultError(err, ErrorCode.SpoolFailed);
      await sink?.discard(error).catch((rmErr: unknown) => services.logger.error({ err: rmErr }, 'could not remove the spool file'));
      await services.db.recordings
        .fail(row.id, { errorCode: error.code, endedAt: new Date(services.now()) })
        .catch((dbErr: unknown) => services.logger.error({ recordingSid: row.recordingSid, err: dbErr }, 'could not mark recording failed'));
      throw error;
    }
    services.metrics.activeRecordings.inc();
    services.metrics.recordingsStarted.inc();
    return new Recording(services, {
      id: row.id,
      recordingSid: row.recordingSid,
      objectKey: envelope.objectKey,
      keyMode: envelope.keyMode,
      channels,
      sink,
      journal,
      // A client-key recording whose key is not kept (SPOOL_CLIENT_KEYS=false) cannot be finished by anyone else.
      checkpointer:
        services.checkpointIntervalMs && manifest.journalKey ? new SpoolCheckpointer(services, manifest, journal, services.checkpointIntervalMs) : null,
      session: services.pool.openSession(createCallDspState({ outputRate: services.outputSampleRate, stereo: channels === 2 }), envelope.encryptor),
      headerBytes: envelope.header.byteLength,
      clientKey: envelope.keyMode === 'client' ? { salt: envelope.salt, dataKey: envelope.dataKey, ...(envelope.scrypt ? { scrypt: envelope.scrypt } : {}) } : null,
      timeline: new RecordingTimeline(params.originMs ?? 0),
      tracks: params.tracks,
    });
  }

  get state(): RecordingState {
    return this.#state;
  }

  /** Aborted when the recording is destroyed or abandoned: wired to its upload and its row-update retries. */
  get signal(): AbortSignal {
    return this.#sink.signal;
  }

  get paused(): boolean {
    return this.#timeline.paused;
  }

  get pauses(): readonly PauseRecord[] {
    return this.#timeline.pauses;
  }

  get failure(): CallvaultError | null {
    return this.#failure;
  }

  /** Resolves once the recording's outcome is in the database, whichever way it ended. */
  get settled(): Promise<void> {
    return (this.#closePromise ?? Promise.resolve()).then(
      () => this.#failWrite,
      () => this.#failWrite,
    );
  }

  /**
   * Takes a frame positioned on the call's media timeline. Frames of other tracks, audio from before this
   * recording started, and audio positioned inside a pause never reach storage, whenever the frame happens
   * to arrive. Throws OVERLOADED when the sender is beyond the journal's hard bound.
   */
  push(callFrame: InputFrame, arrivedAt: number): void {
    if (this.#state !== 'recording') return;
    if (this.#trackFilter && !this.#trackFilter.has(callFrame.trackId)) return;
    this.#batcher.push(this.#timeline.place(callFrame), arrivedAt);
  }

  /** Called periodically by the gateway: group commit of the journal, and batches of quiet calls. */
  flushIfDue(now: number): void {
    if (this.#state !== 'recording') return;
    this.#batcher.tick(now);
    this.#checkpointer?.tick(now);
  }

  /**
   * While paused, no audio reaches the pipeline or storage (PCI). `silence` keeps the paused span on the
   * timeline as silence; `skip` removes it, so what follows the resume joins what preceded the pause.
   */
  pauseAt(behavior: PauseBehavior, mediaMs: number): PauseRecord {
    if (this.#state !== 'recording') throw new CallvaultError(ErrorCode.Conflict, 'recording is not in progress');
    if (this.#timeline.paused) throw new CallvaultError(ErrorCode.Conflict, 'recording is already paused');
    const pause = this.#timeline.pause(behavior, mediaMs, this.#nowIso());
    this.#persist('pauses');
    return pause;
  }

  resumeAt(mediaMs: number): PauseRecord {
    if (this.#state !== 'recording') throw new CallvaultError(ErrorCode.Conflict, 'recording is not in progress');
    if (!this.#timeline.paused) throw new CallvaultError(ErrorCode.Conflict, 'recording is not paused');
    const pause = this.#timeline.resume(mediaMs, this.#nowIso());
    this.#persist('pauses');
    return pause;
  }

  #nowIso(): string {
    return new Date(this.#services.now()).toISOString();
  }

  /** Pauses and gaps live in the row's metadata; a failed write is logged, the audio is unaffected. */
  #persist(what: 'pauses' | 'gaps'): void {
    const services = this.#services;
    const patch = what === 'pauses' ? { pauses: this.#timeline.pauses } : { gaps: this.#timeline.gaps };
    // One write at a time, in order: on a pool of connections two writes in flight may land in either order, and
    // a pause's write landing after its resume's would leave the resume out of the row.
    this.#metadataWrites = this.#metadataWrites.then(() =>
      services.db.recordings
        .mergeMetadata(this.id, patch)
        .then(
          () => undefined,
          (err: unknown) => services.logger.error({ recordingSid: this.recordingSid, code: toCallvaultError(err).code, err }, 'could not store recording metadata'),
        ),
    );
  }

  /** Runs one batch on the worker that holds this call's state and appends its sealed segments to the spool. */
  async #runBatch(batch: InputFrame[], final: boolean, arrivals: readonly number[], journalFrom: number): Promise<void> {
    const services = this.#services;
    let result;
    try {
      result = await this.#session.run(batch, final, this.#sink.signal);
    } catch (err) {
      if (this.#state === 'destroyed' || this.#state === 'abandoned') return;
      result = await this.#recoverBatch(batch, final, journalFrom, err);
      if (!result) {
        // The final batch must still seal the container: retry it without the lost frames.
        if (final && this.#state === 'closing') return this.#runBatch([], final, [], journalFrom + batch.length);
        return;
      }
    }
    if (this.#state === 'destroyed' || this.#state === 'abandoned') return;
    this.#pipelineFailures = 0;
    this.#durationSamples = result.stats.durationSamples;
    if (result.stats.duplicateSamplesDropped > 0) {
      services.metrics.framesDropped.inc({ source: 'pipeline', reason: 'duplicate' }, result.stats.duplicateSamplesDropped);
    }
    if (result.stats.lateSamplesDropped > 0) {
      services.metrics.framesDropped.inc({ source: 'pipeline', reason: 'late' }, result.stats.lateSamplesDropped);
    }
    if (result.output.byteLength > 0) await this.#sink.append(result.output);
    const now = services.now();
    for (const arrivedAt of arrivals) services.metrics.pipelineLatency.observe((now - arrivedAt) / 1000);
  }

  /**
   * A batch failed. If the thread that held the call's state died, the state is rebuilt on its replacement
   * from the journal (every frame before this batch, checked against what the spool already holds) and the
   * batch runs again: nothing is lost. If the thread lives, the batch itself failed and its state is as
   * before: the batch is lost (a gap). Returns the batch's result when it ran after all.
   */
  async #recoverBatch(batch: InputFrame[], final: boolean, journalFrom: number, err: unknown): Promise<SessionBatchResult | null> {
    let holds: boolean;
    try {
      holds = await this.#session.holds();
    } catch (probeErr) {
      this.#batchLost(batch, journalFrom, probeErr);
      return null;
    }
    if (holds) {
      this.#batchLost(batch, journalFrom, err);
      return null;
    }
    const services = this.#services;
    services.logger.warn({ recordingSid: this.recordingSid, code: toCallvaultError(err).code, frames: journalFrom }, 'pipeline worker lost the call state, rebuilding it from the journal');
    try {
      await rebuildSession({
        session: this.#session,
        journal: this.#journal,
        upTo: journalFrom,
        lost: this.#lostRanges,
        spoolPath: this.#sink.file.path,
        spoolFrom: this.#headerBytes,
        spoolTo: this.#sink.size,
        signal: this.#sink.signal,
      });
      const result = await this.#session.run(batch, final, this.#sink.signal);
      services.metrics.pipelineRebuilds.inc({ outcome: 'rebuilt' });
      services.logger.info({ recordingSid: this.recordingSid, frames: journalFrom }, 'pipeline state rebuilt from the journal');
      return result;
    } catch (rebuildErr) {
      if (this.#state === 'destroyed' || this.#state === 'abandoned') return null;
      services.metrics.pipelineRebuilds.inc({ outcome: 'failed' });
      // Without the state, nothing more can be appended to this container: the journal keeps every frame
      // for the retry route (or the next start) to rebuild the whole recording.
      this.destroy(toCallvaultError(rebuildErr, ErrorCode.PipelineFailed));
      return null;
    }
  }

  /**
   * A batch the pipeline lost (its worker died, or it threw): the state from before the batch is still
   * here, so the call carries on and the lost span becomes exact-length silence, recorded as a gap. The
   * frames stay in the journal. Only a pipeline that keeps failing ends the recording.
   */
  #batchLost(frames: readonly InputFrame[], journalFrom: number, err: unknown): void {
    const error = toCallvaultError(err, ErrorCode.PipelineFailed);
    const services = this.#services;
    this.#pipelineFailures++;
    if (frames.length > 0) this.#lostRanges.push([journalFrom, journalFrom + frames.length]);
    services.metrics.framesDropped.inc({ source: 'pipeline', reason: 'batch_lost' }, frames.length);
    services.logger.error({ recordingSid: this.recordingSid, code: error.code, frames: frames.length, err: error }, 'pipeline batch lost');
    if (this.#pipelineFailures >= MAX_CONSECUTIVE_PIPELINE_FAILURES) {
      this.destroy(error);
      return;
    }
    if (frames.length === 0) return;
    this.#timeline.addGaps(frames, error.code);
    this.#persist('gaps');
  }

  /**
   * Finishes: runs every accepted frame through the pipeline, seals the container, completes the upload and
   * the row. `mediaEndMs` is where the call's media timeline stands; a `silence` pause still open there
   * extends the recording with silence up to it.
   */
  close(mediaEndMs?: number): Promise<RecordingSummary> {
    if (this.#closePromise) return this.#closePromise;
    if (this.#state === 'recording') {
      const ended = this.#timeline.closeOpenPause(mediaEndMs, this.#nowIso());
      if (ended) this.#persist('pauses');
      if (ended?.silence) this.#batcher.add(ended.silence, this.#services.now());
    }
    this.#closePromise = this.#finish();
    return this.#closePromise;
  }

  async #finish(): Promise<RecordingSummary> {
    const services = this.#services;
    const stoppedAt = services.now();
    if (this.#state === 'recording') this.#state = 'closing';
    if (this.#state === 'closing') await this.#batcher.drain();
    if (this.#state === 'closing') {
      try {
        await this.#journal.close();
        const { size } = await this.#sink.finish(() => this.#markUploading());
        // A destroy() while the upload finished wins: it has aborted the upload and marked the row failed.
        if (this.#state !== 'closing') throw this.#failure ?? new CallvaultError(ErrorCode.Destroyed, 'recording destroyed');
        const durationMs = this.#durationMs();
        this.#committing = true;
        // The pauses and gaps are in the row before it says completed (what is read after the call is whole).
        await this.#metadataWrites;
        const endedAt = new Date(services.now());
        await retryWhileRetryable(services, this.#sink.signal, 'could not mark recording completed', { recordingSid: this.recordingSid }, () =>
          services.db.recordings.complete(this.id, { durationMs, sizeBytes: size, endedAt }),
        );
        await this.#sink.remove();
        void this.#checkpointer?.discard();
        this.#state = 'closed';
        this.#settle('completed');
        services.metrics.finalizationLatency.observe((services.now() - stoppedAt) / 1000);
        services.logger.info({ recordingSid: this.recordingSid, durationMs, sizeBytes: size }, 'recording completed');
        const summary: RecordingSummary = { id: this.id, recordingSid: this.recordingSid, status: 'completed', durationMs, sizeBytes: size, objectKey: this.objectKey };
        this.#emitClosed(summary);
        return summary;
      } catch (err) {
        this.#committing = false;
        if ((this.#state as RecordingState) !== 'abandoned') this.destroy(toCallvaultError(err, ErrorCode.UploadFailed));
      }
    }
    if ((this.#state as RecordingState) === 'abandoned') {
      const summary = this.#summary('interrupted');
      this.#emitClosed(summary);
      return summary;
    }
    await this.#failWrite;
    const summary = this.#summary('failed');
    this.#emitClosed(summary);
    return summary;
  }

  /** The audio is complete in the spool but S3 has not taken it yet: the API shows `uploading`. */
  #markUploading(): void {
    const services = this.#services;
    services.logger.warn({ recordingSid: this.recordingSid }, 'recording complete in the spool, waiting for S3');
    services.db.recordings
      .markUploading(this.id)
      .catch((err: unknown) => services.logger.error({ recordingSid: this.recordingSid, code: toCallvaultError(err).code, err }, 'could not mark recording uploading'));
  }

  #durationMs(): number {
    return Math.round((this.#durationSamples / this.#services.outputSampleRate) * 1000);
  }

  /**
   * Aborts: the multipart upload is aborted (no dangling parts), the row is marked failed with the error's
   * code, and the spool stays on disk as the record of truth for a later retry.
   */
  destroy(err: CallvaultError = new CallvaultError(ErrorCode.Destroyed, 'recording destroyed')): void {
    if (!this.#stop('destroyed', err)) return;
    const services = this.#services;
    this.#failure = err;
    void this.#checkpointer?.discard();
    this.#settle('failed');
    services.metrics.recordingsFailed.inc({ reason: err.code });
    services.logger.error({ recordingSid: this.recordingSid, code: err.code, err }, 'recording failed');
    this.#failWrite = services.db.recordings.fail(this.id, { errorCode: err.code, endedAt: new Date(services.now()) }).then(
      () => undefined,
      (dbErr: unknown) => services.logger.error({ recordingSid: this.recordingSid, code: toCallvaultError(dbErr).code, err: dbErr }, 'could not mark recording failed'),
    );
    // A destroy during close() is reported by close() itself, once the pipeline has stopped.
    if (!this.#closePromise) this.#emitClosed(this.#summary('failed'));
  }

  /**
   * Shutdown ran out of time: stop without a verdict. Nothing is marked failed; the row stays in progress
   * and the journal on disk, and the next start finishes the recording from it. Idempotent; emits `closed`
   * (status `interrupted`) once.
   */
  abandon(): void {
    const wasClosing = this.#closePromise !== null;
    const reason = new CallvaultError(ErrorCode.ShuttingDown, 'recording left to the spool at shutdown', { retryable: true });
    if (!this.#stop('abandoned', reason)) return;
    // Its checkpoints stay: the next start finishes it, or a peer does if this volume never comes back.
    void this.#checkpointer?.stop();
    this.#settle('interrupted');
    this.#services.logger.warn({ recordingSid: this.recordingSid }, 'recording left in the spool for the next start');
    if (!wasClosing) this.#emitClosed(this.#summary('interrupted'));
  }

  /** The common part of destroy() and abandon(): false when the recording already has an outcome. */
  #stop(state: 'destroyed' | 'abandoned', reason: CallvaultError): boolean {
    if (this.#state === 'destroyed' || this.#state === 'closed' || this.#state === 'abandoned' || this.#committing) return false;
    this.#state = state;
    this.#batcher.stop();
    this.#session.close();
    this.#sink.release(reason);
    // Synced and closed, so the journal is final on disk for whoever finishes the recording.
    void this.#journal
      .close()
      .catch((err: unknown) => this.#services.logger.error({ recordingSid: this.recordingSid, code: toCallvaultError(err).code, err }, 'could not close the frame journal'));
    return true;
  }

  /** Gauges and counters move exactly once per recording, however it ends. */
  #settle(status: 'completed' | 'failed' | 'interrupted'): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#services.metrics.activeRecordings.dec();
    this.#services.metrics.recordingsFinished.inc({ status });
  }

  #summary(status: 'failed' | 'interrupted'): RecordingSummary {
    return {
      id: this.id,
      recordingSid: this.recordingSid,
      status,
      ...(status === 'failed' && this.#failure ? { errorCode: this.#failure.code } : {}),
      durationMs: this.#durationMs(),
      sizeBytes: this.#sink.size,
      objectKey: this.objectKey,
    };
  }

  /** 'closed' fires exactly once, whether the recording finished or was destroyed. */
  #emitClosed(summary: RecordingSummary): void {
    if (this.#closedEmitted) return;
    this.#closedEmitted = true;
    this.emit('closed', summary);
  }
}
