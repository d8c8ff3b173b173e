import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CallvaultError, ErrorCode, isCallvaultError, toCallvaultError } from '../errors/index.js';
import type { RecordingOptions } from '../config/index.js';
import {
  assertClientKeyStrong,
  createEncryptor,
  deriveClientDataKey,
  generateDataKey,
  generateSalt,
  unwrapDataKey,
  wrapDataKey,
  type EncryptorState,
  type KeyMode,
} from '../crypto/index.js';
import { createCallDspState, type CallDspState, type InputFrame } from '../pipeline/index.js';
import { JournalWriter, startSpoolUpload, type SpoolFile, type SpoolUpload, type SpoolUploadResult } from '../storage/index.js';
import type { RecordingServices } from './services.js';

/** About this much audio per call goes to a worker in one hop; per-frame hops would drown in overhead. */
const BATCH_MEDIA_MS = 100;
/** A batch also leaves once its oldest frame has waited this long, so quiet calls still move. */
const BATCH_MAX_WAIT_MS = 200;
/**
 * Audio a recording holds in memory while its workers are behind. Beyond it, frames are kept only in the
 * journal on disk and the pipeline catches up from there: a fast sender is slowed down, never cut off.
 */
const MAX_PENDING_MEDIA_MS = 30_000;
/** Frames read back from the journal per batch while catching up: about two seconds of a two-track call. */
const CATCH_UP_FRAMES = 200;
/** The hard bound: a sender this far ahead of the pipeline (journal bytes not yet processed) is closed. */
const MAX_JOURNAL_BACKLOG_BYTES = 256 * 1024 * 1024;
/** A batch that fails this many times in a row means the pipeline cannot process this call at all. */
const MAX_CONSECUTIVE_PIPELINE_FAILURES = 3;
/** What a spool manifest of a recording that can be recovered from its journal says it is. */
export const RECOVERABLE_MANIFEST_VERSION = 2;

/**
 * What the spool manifest holds so that a later start can finish the recording from its journal alone.
 * The data key is wrapped under the master key; for client-key recordings it exists nowhere else on disk
 * and is erased with the spool when the recording completes.
 */
export interface RecordingManifest {
  manifestVersion: typeof RECOVERABLE_MANIFEST_VERSION;
  recordingId: string;
  recordingSid: string;
  orgId: string;
  callDbId: string;
  callExternalId: string;
  bucket: string;
  objectKey: string;
  createdAt: string;
  keyMode: KeyMode;
  /** Server mode: the master key wrapping the data key. Client mode: '' (the container's key id). */
  keyId: string;
  salt: string;
  sampleRate: number;
  channels: 1 | 2;
  /** Absent for client-key recordings when SPOOL_CLIENT_KEYS=false: such a crashed recording cannot be finished. */
  journalKey?: { masterKeyId: string; wrapped: string };
}

/** The data key of a recoverable manifest, or null when it was deliberately not kept. */
export function manifestDataKey(manifest: RecordingManifest, keyring: ReadonlyMap<string, Uint8Array>): Uint8Array | null {
  if (!manifest.journalKey) return null;
  return unwrapDataKey(keyring, manifest.journalKey.masterKeyId, Buffer.from(manifest.journalKey.wrapped, 'base64'));
}

/** Exponential backoff with jitter: half the capped delay fixed, half random, so a fleet does not retry in step. */
export function retryDelayMs(attempt: number, initialMs: number, maxMs: number): number {
  const capped = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return capped / 2 + Math.random() * (capped / 2);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

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
  readonly #journal: JournalWriter;
  #upload: SpoolUpload | null = null;
  #uploaded: Promise<SpoolUploadResult> = Promise.resolve({ size: 0 });
  #pipelineFailures = 0;
  /** Frames added to the journal so far. */
  #journaledFrames = 0;
  /** Journal index of the first frame not held in memory, while the pipeline catches up; else null. */
  #catchUpFrom: number | null = null;
  #catchUpBytes = 0;
  readonly #gaps: Array<{ track: string; fromMs: number; toMs: number; reason: string }> = [];
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
      journal: JournalWriter;
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
    this.#journal = init.journal;
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

    const keepKey = keyMode === 'server' || services.spoolClientKeys !== false;
    const manifest: RecordingManifest = {
      manifestVersion: RECOVERABLE_MANIFEST_VERSION,
      recordingId: row.id,
      recordingSid: row.recordingSid,
      orgId: params.orgId,
      callDbId: params.callId,
      callExternalId: params.callExternalId,
      bucket: services.bucket,
      objectKey,
      createdAt: startedAt.toISOString(),
      keyMode,
      keyId,
      salt: Buffer.from(salt).toString('base64'),
      sampleRate: services.outputSampleRate,
      channels,
      ...(keepKey
        ? {
            journalKey: {
              masterKeyId: services.keyring.currentId,
              wrapped: Buffer.from(wrappedKey ?? wrapDataKey(services.keyring.current, services.keyring.currentId, dataKey)).toString('base64'),
            },
          }
        : {}),
    };
    let spoolFile: SpoolFile | undefined;
    let journal: JournalWriter | undefined;
    try {
      spoolFile = await services.spool.create(row.id, manifest as unknown as Record<string, unknown>);
      await spoolFile.append(header);
      journal = await JournalWriter.create({ path: services.spool.journalPath(row.id), recordingId: row.id, dataKey });
    } catch (err) {
      // The row exists already: say why it never recorded instead of leaving it in progress for good.
      const error = toCallvaultError(err, ErrorCode.SpoolFailed);
      await journal?.close().catch((closeErr: unknown) => services.logger.error({ err: closeErr }, 'could not close the frame journal'));
      await spoolFile?.remove().catch((rmErr: unknown) => services.logger.error({ err: rmErr }, 'could not remove the spool file'));
      await services.db.recordings.fail(row.id, { errorCode: error.code, endedAt: new Date(services.now()) }).catch(() => undefined);
      throw error;
    }
    const metrics = services.metrics;
    const recording = new Recording(services, {
      id: row.id,
      recordingSid: row.recordingSid,
      objectKey,
      keyMode,
      channels,
      spoolFile,
      journal,
      dsp: createCallDspState({ outputRate: services.outputSampleRate, stereo: channels === 2 }),
      encryptor,
      originMs: params.originMs ?? 0,
      tracks: params.tracks,
    });
    recording.#uploaded = uploadSpoolUntilDone(services, {
      recordingId: row.id,
      recordingSid: row.recordingSid,
      objectKey,
      keyMode,
      spoolFile,
      signal: recording.#abort.signal,
      onAttempt: (upload) => (recording.#upload = upload),
    });
    // Rejects only when the recording is destroyed or abandoned; both handle the outcome themselves.
    recording.#uploaded.catch(() => undefined);
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
    for (const frame of this.#toRecordingTimeline(callFrame)) this.#accept(frame, arrivedAt);
    if (this.#catchUpFrom !== null && this.#journal.bytes - this.#catchUpBytes > MAX_JOURNAL_BACKLOG_BYTES) {
      throw new CallvaultError(ErrorCode.Overloaded, 'stream is too far ahead of the recording pipeline', { retryable: true });
    }
    if (this.#pendingMediaMs >= BATCH_MEDIA_MS || this.#catchUpFrom !== null) this.#pump();
  }

  /**
   * Every accepted frame goes to the journal first. It is also kept in memory for the next batch, unless the
   * workers are behind by more than MAX_PENDING_MEDIA_MS: then this and every later frame is read back from
   * the journal once the pipeline gets there (frames stay in order: memory holds only older ones).
   */
  #accept(frame: InputFrame, arrivedAt: number): void {
    this.#journal.add(frame);
    const index = this.#journaledFrames++;
    if (this.#catchUpFrom === null && this.#pendingMediaMs + frameMediaMs(frame) > MAX_PENDING_MEDIA_MS) {
      this.#catchUpFrom = index;
      this.#catchUpBytes = this.#journal.bytes;
      this.#services.logger.warn({ recordingSid: this.recordingSid }, 'stream ahead of the pipeline, catching up from the journal');
    }
    if (this.#catchUpFrom !== null) return;
    this.#pending.push(frame);
    this.#pendingArrivals.push(arrivedAt);
    this.#pendingMediaMs += frameMediaMs(frame);
  }

  /** The next frames to catch up on, read back from the journal (made durable first, so they can be read). */
  async #catchUpBatch(): Promise<InputFrame[]> {
    const from = this.#catchUpFrom!;
    await this.#journal.flush();
    const frames = await this.#journal.readFrames(from, CATCH_UP_FRAMES);
    this.#catchUpFrom = from + frames.length;
    this.#catchUpBytes = this.#journal.bytes;
    if (this.#catchUpFrom >= this.#journaledFrames) this.#catchUpFrom = null;
    return frames;
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
    if (this.#state === 'recording' && this.#journal.dirty) this.#flushJournal();
    const oldest = this.#pendingArrivals[0];
    if (this.#state === 'recording' && oldest !== undefined && now - oldest >= BATCH_MAX_WAIT_MS) this.#pump();
  }

  /** Group commit: everything journaled since the last tick is sealed, written and synced at once. */
  #flushJournal(): Promise<void> {
    return this.#journal.flush().catch((err: unknown) => {
      this.destroy(toCallvaultError(err, ErrorCode.SpoolFailed));
    });
  }

  /**
   * A batch the pipeline lost (its worker died, or it threw): the state from before the batch is still
   * here, so the call carries on and the lost span becomes exact-length silence, recorded as a gap. The
   * frames stay in the journal. Only a pipeline that keeps failing ends the recording.
   */
  #batchLost(frames: readonly InputFrame[], err: unknown): void {
    const error = toCallvaultError(err, ErrorCode.PipelineFailed);
    this.#pipelineFailures++;
    const services = this.#services;
    // One gap per track: the tracks of a batch cover different spans of the timeline.
    const spans = new Map<string, { fromMs: number; toMs: number }>();
    for (const frame of frames) {
      const start = (frame.position / frame.sampleRate) * 1000;
      const span = spans.get(frame.trackId) ?? { fromMs: Infinity, toMs: 0 };
      span.fromMs = Math.min(span.fromMs, start);
      span.toMs = Math.max(span.toMs, start + frameMediaMs(frame));
      spans.set(frame.trackId, span);
    }
    services.metrics.framesDropped.inc({ source: 'pipeline', reason: 'batch_lost' }, frames.length);
    services.logger.error({ recordingSid: this.recordingSid, code: error.code, frames: frames.length, err: error }, 'pipeline batch lost');
    if (this.#pipelineFailures >= MAX_CONSECUTIVE_PIPELINE_FAILURES) {
      this.destroy(error);
      return;
    }
    if (frames.length === 0) return;
    for (const [track, span] of spans) {
      this.#gaps.push({ track, fromMs: Math.round(span.fromMs), toMs: Math.round(span.toMs), reason: error.code });
    }
    services.db.recordings
      .mergeMetadata(this.id, { gaps: this.#gaps })
      .catch((dbErr: unknown) => services.logger.error({ recordingSid: this.recordingSid, err: dbErr }, 'could not store gaps'));
  }

  #pump(final = false): Promise<void> {
    if (this.#inFlight) return this.#inFlight;
    if (this.#pending.length === 0 && this.#catchUpFrom !== null) return this.#pumpCatchUp();
    if (this.#pending.length === 0 && !final) return Promise.resolve();
    const frames = packFrames(this.#pending);
    const arrivals = this.#pendingArrivals;
    this.#pending = [];
    this.#pendingArrivals = [];
    this.#pendingMediaMs = 0;
    return this.#track(this.#runBatch(frames, final, arrivals));
  }

  /** Runs one batch through a worker and appends its sealed segments to the spool. */
  async #runBatch(batch: InputFrame[], final: boolean, arrivals: readonly number[]): Promise<void> {
    const services = this.#services;
    let result;
    try {
      result = await services.pool.run({ dsp: this.#dsp, encryptor: this.#encryptor, frames: batch, final });
    } catch (err) {
      if (this.#state === 'destroyed' || this.#state === 'abandoned') return;
      this.#batchLost(batch, err);
      // The final batch must still seal the container: retry it without the lost frames.
      if (final && this.#state === 'closing') return this.#runBatch([], final, []);
      return;
    }
    if (this.#state === 'destroyed' || this.#state === 'abandoned') return;
    this.#pipelineFailures = 0;
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
  }

  /** Registers a batch as the one in flight; when it ends, the next one starts if enough is waiting. */
  #track(batch: Promise<void>): Promise<void> {
    const inFlight = batch
      .catch((err: unknown) => {
        this.destroy(toCallvaultError(err, ErrorCode.PipelineFailed));
      })
      .finally(() => {
        this.#inFlight = null;
        if (this.#state === 'recording' && (this.#pendingMediaMs >= BATCH_MEDIA_MS || this.#catchUpFrom !== null)) void this.#pump();
      });
    this.#inFlight = inFlight;
    return inFlight;
  }

  /** One catch-up batch: frames read back from the journal, through the same pipeline step. */
  #pumpCatchUp(): Promise<void> {
    return this.#track(
      (async () => {
        const frames = await this.#catchUpBatch();
        if (frames.length === 0) return;
        await this.#runBatch(frames, false, []);
      })(),
    );
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
        const silence: InputFrame = {
          trackId: PAUSE_SILENCE_TRACK,
          role: 'caller',
          encoding: 'pcm_s16le',
          sampleRate: rate,
          position: pauseStart - Math.round((this.#originMs * rate) / 1000) - this.#skippedBefore(pauseStart, rate / 1000),
          data: new Uint8Array(samples * 2),
        };
        this.#accept(silence, this.#services.now());
      }
    }
    this.#closePromise = this.#finish();
    return this.#closePromise;
  }

  async #finish(): Promise<RecordingSummary> {
    const services = this.#services;
    const stoppedAt = services.now();
    if (this.#state === 'recording') this.#state = 'closing';
    // Everything accepted is recorded: what memory holds, then whatever is still to catch up on from the journal.
    for (;;) {
      while (this.#inFlight) await this.#inFlight;
      if (this.#state !== 'closing' || this.#catchUpFrom === null) break;
      await this.#pump();
    }
    if (this.#state === 'closing') await this.#pump(true);
    if (this.#state === 'closing') {
      try {
        await this.#journal.close();
        await this.#spoolFile.seal();
        const { size } = await this.#uploaded;
        // A destroy() while the upload finished wins: it has aborted the upload and marked the row failed.
        if (this.#state !== 'closing') throw this.#failure ?? new CallvaultError(ErrorCode.Destroyed, 'recording destroyed');
        const durationMs = Math.round((this.#durationSamples / services.outputSampleRate) * 1000);
        // From here the object is complete in S3: a destroy() can no longer undo it, so it becomes a no-op.
        this.#committing = true;
        const endedAt = new Date(services.now());
        await retryWhileRetryable(services, this.#abort.signal, 'could not mark recording completed', { recordingSid: this.recordingSid }, () =>
          services.db.recordings.complete(this.id, { durationMs, sizeBytes: size, endedAt }),
        );
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
        if ((this.#state as RecordingState) !== 'abandoned') this.destroy(toCallvaultError(err, ErrorCode.UploadFailed));
      }
    }
    if ((this.#state as RecordingState) === 'abandoned') {
      const summary = this.#failedSummary('interrupted');
      this.#emitClosed(summary);
      return summary;
    }
    await this.#failWrite;
    const summary = this.#failedSummary();
    this.#emitClosed(summary);
    return summary;
  }

  /** Gauges and counters move exactly once per recording, however it ends. */
  #settle(status: 'completed' | 'failed' | 'interrupted'): void {
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

  #failedSummary(status: 'failed' | 'interrupted' = 'failed'): RecordingSummary {
    return {
      id: this.id,
      recordingSid: this.recordingSid,
      status,
      ...(status === 'failed' && this.#failure ? { errorCode: this.#failure.code } : {}),
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
    if (this.#state === 'destroyed' || this.#state === 'closed' || this.#state === 'abandoned' || this.#committing) return;
    const services = this.#services;
    this.#state = 'destroyed';
    this.#failure = err;
    this.#pending = [];
    this.#pendingArrivals = [];
    this.#abort.abort(err);
    this.#upload?.abort(err);
    this.#releaseSpool();
    this.#settle('failed');
    services.metrics.recordingsFailed.inc({ reason: err.code });
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

  /**
   * The spool stays as the record of truth (retried on the next start or by the retry route): the journal
   * is synced and closed, the data file sealed, so both are final on disk and their handles released.
   */
  #releaseSpool(): void {
    const logger = this.#services.logger;
    void this.#journal.close().catch((err: unknown) => logger.error({ recordingSid: this.recordingSid, err }, 'could not close the frame journal'));
    void this.#spoolFile.seal().catch((err: unknown) => {
      // Already failed or removed: the journal, not the data file, is what recovery reads.
      if (isCallvaultError(err) && err.code === ErrorCode.Closed) return;
      logger.error({ recordingSid: this.recordingSid, err }, 'could not seal the spool file');
    });
  }

  /**
   * Shutdown ran out of time: stop without a verdict. Nothing is marked failed; the row stays in progress
   * and the journal on disk, and the next start finishes the recording from it. Idempotent; emits `closed`
   * (status `interrupted`) once.
   */
  abandon(): void {
    if (this.#state === 'destroyed' || this.#state === 'closed' || this.#state === 'abandoned' || this.#committing) return;
    const wasClosing = this.#closePromise !== null;
    this.#state = 'abandoned';
    this.#pending = [];
    this.#pendingArrivals = [];
    const reason = new CallvaultError(ErrorCode.ShuttingDown, 'recording left to the spool at shutdown', { retryable: true });
    this.#abort.abort(reason);
    this.#upload?.abort(reason);
    this.#releaseSpool();
    this.#settle('interrupted');
    this.#services.logger.warn({ recordingSid: this.recordingSid }, 'recording left in the spool for the next start');
    if (!wasClosing) this.#emitClosed(this.#failedSummary('interrupted'));
  }

  get failure(): CallvaultError | null {
    return this.#failure;
  }
}

/** Runs a database write until it succeeds: a restarting PostgreSQL must not turn a finished recording into a lost one. */
export async function retryWhileRetryable<T>(
  services: RecordingServices,
  signal: AbortSignal,
  message: string,
  ids: Record<string, unknown>,
  write: () => Promise<T>,
): Promise<T> {
  const { initialDelayMs, maxDelayMs } = services.retry ?? DEFAULT_RETRY;
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      const error = toCallvaultError(err);
      if (!error.retryable || signal.aborted) throw error;
      services.logger.warn({ ...ids, code: error.code, attempt, err: error }, message);
      await sleep(retryDelayMs(attempt, initialDelayMs, maxDelayMs), signal);
    }
  }
}

export const DEFAULT_RETRY = { initialDelayMs: 500, maxDelayMs: 30_000 } as const;

export interface SpoolUploadTarget {
  recordingId: string;
  recordingSid: string;
  objectKey: string;
  keyMode: KeyMode;
  spoolFile: SpoolFile;
  signal: AbortSignal;
  onAttempt?(upload: SpoolUpload): void;
}

/**
 * Uploads a spool file, starting again from its first byte after every failure, with exponential backoff
 * and jitter and no limit of time: S3 being away for minutes delays a recording, it never loses it. The
 * multipart UploadId of each attempt is stored in the row so an orphan can be aborted by id. Rejects only
 * when `signal` aborts (the recording was destroyed, deleted or left for the next start).
 */
export async function uploadSpoolUntilDone(services: RecordingServices, target: SpoolUploadTarget): Promise<SpoolUploadResult> {
  const { initialDelayMs, maxDelayMs } = services.retry ?? DEFAULT_RETRY;
  const metrics = services.metrics;
  const log = { recordingSid: target.recordingSid };
  let waiting = false;
  try {
    for (let attempt = 0; ; attempt++) {
      if (target.signal.aborted) throw target.signal.reason;
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
          services.db.recordings
            .setUploadId(target.recordingId, uploadId)
            .catch((err: unknown) => services.logger.error({ ...log, err }, 'could not store the upload id'));
        },
      });
      target.onAttempt?.(upload);
      try {
        const result = await upload.done;
        return result;
      } catch (err) {
        if (target.signal.aborted) throw target.signal.reason;
        const error = toCallvaultError(err, ErrorCode.UploadFailed);
        metrics.partUploadFailures.inc();
        metrics.uploadRetries.inc();
        if (!waiting) {
          waiting = true;
          metrics.uploadBacklog.add(target.spoolFile);
        }
        const delayMs = retryDelayMs(attempt, initialDelayMs, maxDelayMs);
        services.logger.warn({ ...log, code: error.code, attempt, delayMs: Math.round(delayMs), err: error }, 'upload failed, retrying from the spool');
        await sleep(delayMs, target.signal);
      }
    }
  } finally {
    if (waiting) metrics.uploadBacklog.delete(target.spoolFile);
  }
}
