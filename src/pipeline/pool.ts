import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { EncryptorState } from '../crypto/index.js';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { BatchStats, CallDspState, InputFrame } from './types.js';
import { FRAME_FIELDS, type BatchGroupTask, type BatchResult, type BatchTask, type GroupResult, type SealTask, type TrackInfo } from './worker.js';

function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

export interface PipelinePoolOptions {
  threads?: number;
  /** Told when freeing a finished session's state on its thread failed (the thread died, the pool closed). */
  onDropFailed?: (err: unknown) => void;
  /**
   * Batches allowed to wait for a thread. Beyond it, callers wait in `run()` (backpressure) instead of
   * piling work into piscina's queues, so memory held by queued batches stays bounded.
   */
  maxQueued?: number;
}

/** What a session's batch gives back: the sealed segments to append to the spool, in order. */
export interface SessionBatchResult {
  output: Uint8Array;
  stats: BatchStats;
}

type LaneTask = BatchTask | BatchGroupTask | SealTask | { session: number };

interface QueuedBatch {
  task: BatchTask;
  resolve: (result: BatchResult) => void;
  reject: (err: unknown) => void;
}

/**
 * One thread and its queue. Calls are pinned to a lane for their whole life: the lane's thread keeps their
 * DSP and encryptor state, so only frames go in and only ciphertext comes out. Piscina replaces a thread
 * that dies (its sessions with it).
 */
class Lane {
  readonly piscina: Piscina<LaneTask, unknown>;
  sessions = 0;
  /** Batches submitted in this turn of the event loop: they leave together, as one message to the thread. */
  #group: QueuedBatch[] = [];
  #scheduled = false;
  /** Messages sent to the thread so far (a group counts once). */
  messages = 0;

  constructor() {
    this.piscina = new Piscina({
      filename: new URL('./worker.js', import.meta.url).href,
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: 60_000,
      // Unbounded per lane: the pool's own bound (maxQueued) applies across lanes.
      maxQueue: Infinity,
    });
  }

  /**
   * Runs one session's batch. Batches submitted in the same turn (every call whose batch the gateway's tick
   * started) go to the thread as one message, with every payload transferred, and come back as one: the cost
   * of a hop (piscina's task, the structured clone, waking the thread) is paid once per tick, not per call.
   */
  submit(task: BatchTask): Promise<BatchResult> {
    return new Promise<BatchResult>((resolve, reject) => {
      this.#group.push({ task, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      setImmediate(() => this.#send());
    });
  }

  #send(): void {
    this.#scheduled = false;
    const group = this.#group;
    this.#group = [];
    this.messages++;
    if (group.length === 1) {
      const [only] = group as [QueuedBatch];
      const transferList = only.task.payload.byteLength > 0 ? [only.task.payload.buffer as ArrayBuffer] : [];
      this.piscina.run(only.task, { transferList }).then((result) => only.resolve(result as BatchResult), only.reject);
      return;
    }
    const transferList = group.filter((q) => q.task.payload.byteLength > 0).map((q) => q.task.payload.buffer as ArrayBuffer);
    this.piscina.run({ batches: group.map((q) => q.task) } satisfies BatchGroupTask, { name: 'runBatches', transferList }).then(
      (results) => {
        (results as GroupResult[]).forEach((result, i) => {
          const queued = group[i]!;
          // A batch that threw on the thread fails alone; the others of its group stand.
          if ('failed' in result) queued.reject(new Error(result.failed));
          else queued.resolve(result);
        });
      },
      // The thread died (or the pool closed): every batch of the group failed with it.
      (err: unknown) => {
        for (const queued of group) queued.reject(err);
      },
    );
  }
}

/**
 * The worker threads that do all DSP and encryption. The main thread only moves bytes: each recording opens
 * a session pinned to the least loaded thread, and its batches go there, one in flight at a time.
 */
export class PipelinePool {
  readonly #lanes: Lane[];
  readonly #maxQueued: number;
  /** @internal read by sessions */
  readonly onDropFailed: (err: unknown) => void;
  readonly #waiters: Array<() => void> = [];
  #running = 0;
  #nextSession = 1;
  #closed = false;

  constructor(options: PipelinePoolOptions = {}) {
    const threads = options.threads ?? Math.max(1, availableParallelism());
    this.#lanes = Array.from({ length: threads }, () => new Lane());
    this.#maxQueued = options.maxQueued ?? threads * 64;
    this.onDropFailed = options.onDropFailed ?? (() => undefined);
  }

  get threads(): number {
    return this.#lanes.length;
  }

  /** Batches submitted and not yet finished (running or queued inside piscina). */
  get pending(): number {
    return this.#running;
  }

  /** Callers waiting for room in the queue. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * The live worker threads. Piscina replaces one that exits; tests terminate one here to prove a call
   * survives losing the thread that held its state.
   */
  get workers(): readonly Worker[] {
    return this.#lanes.flatMap((lane) => lane.piscina.threads);
  }

  /** Messages sent to the worker threads for batches so far (a group of batches counts once). */
  get messages(): number {
    let sum = 0;
    for (const lane of this.#lanes) sum += lane.messages;
    return sum;
  }

  get utilization(): number {
    let sum = 0;
    for (const lane of this.#lanes) sum += lane.piscina.utilization;
    return sum / this.#lanes.length;
  }

  get ready(): boolean {
    return !this.#closed && this.#lanes.every((lane) => lane.piscina.threads.length > 0);
  }

  /**
   * A session for one recording, on the thread with the fewest sessions. `dsp` and `encryptor` are where it
   * starts; they travel once, with the first batch.
   */
  openSession(dsp: CallDspState, encryptor: EncryptorState): PipelineSession {
    let lane = this.#lanes[0]!;
    for (const candidate of this.#lanes) if (candidate.sessions < lane.sessions) lane = candidate;
    return new PipelineSession(this, lane, this.#nextSession++, { dsp, encryptor });
  }

  /** @internal a session's batch, through the pool's bound. */
  async runOn(lane: Lane, task: BatchTask, signal: AbortSignal | undefined): Promise<BatchResult> {
    if (this.#closed) throw new CallvaultError(ErrorCode.Closed, 'pipeline pool is closed');
    while (this.#running >= this.#maxQueued + this.threads) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
      if (this.#closed) throw new CallvaultError(ErrorCode.Closed, 'pipeline pool is closed');
    }
    if (signal?.aborted) {
      this.#waiters.shift()?.();
      throw signal.reason;
    }
    this.#running++;
    try {
      const running = lane.submit(task);
      if (!signal) return await running;
      // The batch runs on with its group; an aborted recording just stops waiting for it.
      return await abortable(running, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw new CallvaultError(ErrorCode.PipelineFailed, 'pipeline batch failed', { cause: err });
    } finally {
      this.#running--;
      this.#waiters.shift()?.();
    }
  }

  /**
   * Encrypts and seals a whole finished recording (an import) on a worker thread. The plaintext's memory is
   * moved there when it owns it (it is not used afterwards), copied otherwise.
   */
  async seal(task: SealTask): Promise<Uint8Array> {
    if (this.#closed) throw new CallvaultError(ErrorCode.Closed, 'pipeline pool is closed');
    const { plaintext } = task;
    const owned = plaintext.byteOffset === 0 && plaintext.byteLength === plaintext.buffer.byteLength && plaintext.byteLength > 64 * 1024;
    let lane = this.#lanes[0]!;
    for (const candidate of this.#lanes) if (candidate.piscina.queueSize < lane.piscina.queueSize) lane = candidate;
    try {
      return (await lane.piscina.run(task, { name: 'seal', ...(owned ? { transferList: [plaintext.buffer as ArrayBuffer] } : {}) })) as Uint8Array;
    } catch (err) {
      throw new CallvaultError(ErrorCode.PipelineFailed, 'sealing the recording failed', { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#waiters.splice(0)) wake();
    await Promise.all(this.#lanes.map((lane) => lane.piscina.close()));
  }
}

/**
 * One recording's pipeline state, held by one worker thread. Batches run in the order given, one at a time
 * (the owner's batcher guarantees it). `established` turns true once the thread holds the state.
 */
export class PipelineSession {
  readonly id: number;
  readonly #pool: PipelinePool;
  readonly #lane: Lane;
  readonly #init: { dsp: CallDspState; encryptor: EncryptorState };
  #established = false;
  #ended = false;
  /** The session's tracks by index, and how many of them the thread holds. */
  readonly #trackIndex = new Map<string, number>();
  readonly #tracks: TrackInfo[] = [];
  #tracksOnThread = 0;

  /** @internal created by PipelinePool.openSession */
  constructor(pool: PipelinePool, lane: Lane, id: number, init: { dsp: CallDspState; encryptor: EncryptorState }) {
    this.#pool = pool;
    this.#lane = lane;
    this.id = id;
    this.#init = init;
    lane.sessions++;
  }

  /** True once a batch succeeded: from then on the state lives on the thread, and only there. */
  get established(): boolean {
    return this.#established;
  }

  /**
   * Runs one batch: the frames' payloads are packed into one buffer that moves to the thread. Rejects with
   * PIPELINE_FAILED when the batch failed (the thread's state is then as before the batch, unless the thread
   * died: see `holds()`).
   */
  async run(frames: readonly InputFrame[], final: boolean, signal?: AbortSignal): Promise<SessionBatchResult> {
    if (this.#ended) throw new CallvaultError(ErrorCode.Closed, 'pipeline session has ended');
    let total = 0;
    for (const frame of frames) total += frame.data.byteLength;
    const payload = new Uint8Array(total);
    const meta = new Float64Array(frames.length * FRAME_FIELDS);
    let offset = 0;
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i]!;
      payload.set(f.data, offset);
      offset += f.data.byteLength;
      // Keyed by everything a track fixes, so a frame that disagrees with its track still reaches the DSP as
      // it came (and is judged there), never silently relabelled.
      const key = `${f.trackId}\u0000${f.role}\u0000${f.encoding}\u0000${f.sampleRate}`;
      let track = this.#trackIndex.get(key);
      if (track === undefined) {
        track = this.#tracks.length;
        this.#trackIndex.set(key, track);
        this.#tracks.push({ trackId: f.trackId, role: f.role, encoding: f.encoding, sampleRate: f.sampleRate });
      }
      meta[i * FRAME_FIELDS] = track;
      meta[i * FRAME_FIELDS + 1] = f.position;
      meta[i * FRAME_FIELDS + 2] = f.data.byteLength;
    }
    const tracksFrom = this.#established ? this.#tracksOnThread : 0;
    const task: BatchTask = {
      session: this.id,
      tracksFrom,
      tracks: this.#tracks.slice(tracksFrom),
      frames: meta,
      payload,
      final,
      ...(this.#established ? {} : { init: this.#init }),
    };
    const result = await this.#pool.runOn(this.#lane, task, signal);
    if (!result.ok) {
      // Still "established" as far as the owner knows: holds() answers false, and the owner rebuilds.
      throw new CallvaultError(ErrorCode.PipelineFailed, 'the worker thread holding this call lost its state', { details: { reason: result.reason } });
    }
    this.#established = !final;
    this.#tracksOnThread = this.#tracks.length;
    if (final) this.#end(false);
    return { output: result.output, stats: result.stats };
  }

  /**
   * Whether the thread still holds the state, after a failed batch: false when the thread died (its
   * replacement starts empty). A session that never got established has nothing to lose.
   */
  async holds(): Promise<boolean> {
    if (!this.#established) return true;
    try {
      return (await this.#lane.piscina.run({ session: this.id }, { name: 'holds' })) === true;
    } catch (err) {
      throw new CallvaultError(ErrorCode.PipelineFailed, 'could not reach the worker thread', { cause: err });
    }
  }

  /** Starts over from the initial state: the next batch carries it again (a rebuild replays from there). */
  restart(): void {
    this.#established = false;
  }

  /** Frees the thread's copy of the state; idempotent. */
  close(): void {
    this.#end(this.#established);
  }

  #end(dropOnThread: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#established = false;
    this.#lane.sessions--;
    if (dropOnThread) {
      // A thread that died took the state with it anyway; the failure is reported, nothing is retried.
      this.#lane.piscina.run({ session: this.id }, { name: 'drop' }).catch((err: unknown) => this.#pool.onDropFailed(err));
    }
  }
}
