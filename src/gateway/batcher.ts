/**
 * Between a recording's socket and the worker pool: frames are journaled first (the durable copy), then
 * grouped into batches of about BATCH_MEDIA_MS so that one worker hop carries many frames. One batch is in
 * flight at a time, in order. When the workers fall behind by more than MAX_PENDING_MEDIA_MS, memory stops
 * taking frames and the batcher catches up from the journal instead: a fast sender is slowed down, never
 * cut off, and memory stays bounded. Only a sender beyond the hard disk bound is refused (OVERLOADED).
 */
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import type { InputFrame } from '../pipeline/index.js';
import type { JournalWriter } from '../storage/journal.js';
import { frameMediaMs } from './timeline.js';

/** About this much audio per call goes to a worker in one hop; per-frame hops would drown in overhead. */
export const BATCH_MEDIA_MS = 100;
/**
 * Batches start on the gateway's tick (every 50 ms), so that the batches of every call due at one tick reach
 * each worker thread as one message (pool.ts groups them): one hop per thread per tick, whatever the number of
 * calls. A tick sends a call's batch once this much waits: with real-time audio, about 100 ms every other tick.
 */
export const BATCH_READY_MEDIA_MS = 75;
/** A batch also leaves once its oldest frame has waited this long, so quiet calls still move. */
export const BATCH_MAX_WAIT_MS = 200;
/** Audio held in memory while the workers are behind; beyond it, frames are read back from the journal. */
export const MAX_PENDING_MEDIA_MS = 30_000;
/** Frames read back from the journal per batch while catching up: about two seconds of a two-track call. */
const CATCH_UP_FRAMES = 200;
/** The hard bound: a sender this far ahead of the pipeline (journal bytes not yet processed) is refused. */
export const MAX_JOURNAL_BACKLOG_BYTES = 256 * 1024 * 1024;

/**
 * Runs one batch through the pipeline into storage. `arrivals` are the frames' arrival times (for latency);
 * `journalFrom` is the journal index of the batch's first frame (its frames are contiguous in the journal).
 */
export type BatchRunner = (frames: InputFrame[], final: boolean, arrivals: readonly number[], journalFrom: number) => Promise<void>;

/** The two bounds of a recording's backlog; the defaults are the product's, tests shrink them. */
export interface BatcherLimits {
  maxPendingMediaMs: number;
  maxJournalBacklogBytes: number;
}

const DEFAULT_LIMITS: BatcherLimits = { maxPendingMediaMs: MAX_PENDING_MEDIA_MS, maxJournalBacklogBytes: MAX_JOURNAL_BACKLOG_BYTES };

export interface BatcherHooks {
  /** The journal could not be made durable, or a batch runner threw: the recording cannot go on. */
  onFailure(err: CallvaultError): void;
  /** Memory is full: from now on frames are read back from the journal. */
  onCatchUpStarted(): void;
}

export class FrameBatcher {
  readonly #journal: JournalWriter;
  readonly #run: BatchRunner;
  readonly #hooks: BatcherHooks;
  readonly #limits: BatcherLimits;
  #pending: InputFrame[] = [];
  #pendingArrivals: number[] = [];
  #pendingMediaMs = 0;
  /** Frames added to the journal so far. */
  #journaledFrames = 0;
  /** Journal index of the first frame not held in memory, while catching up; else null. */
  #catchUpFrom: number | null = null;
  #catchUpBytes = 0;
  #inFlight: Promise<void> | null = null;
  /** Taking frames and starting batches on its own; false once draining or stopped. */
  #open = true;
  #stopped = false;

  constructor(journal: JournalWriter, run: BatchRunner, hooks: BatcherHooks, limits: BatcherLimits = DEFAULT_LIMITS) {
    this.#journal = journal;
    this.#run = run;
    this.#hooks = hooks;
    this.#limits = limits;
  }

  /** True while the batcher reads frames back from the journal rather than from memory. */
  get catchingUp(): boolean {
    return this.#catchUpFrom !== null;
  }

  /** Audio held in memory, waiting for the next batch (ms). */
  get pendingMediaMs(): number {
    return this.#pendingMediaMs;
  }

  /**
   * Takes frames already placed on the recording's timeline. Throws OVERLOADED when the sender is beyond
   * the hard bound; everything it sent up to then is in the journal.
   */
  push(frames: readonly InputFrame[], arrivedAt: number): void {
    if (this.#stopped) return;
    for (const frame of frames) this.add(frame, arrivedAt);
    if (this.#catchUpFrom !== null && this.#journal.bytes - this.#catchUpBytes > this.#limits.maxJournalBacklogBytes) {
      throw new CallvaultError(ErrorCode.Overloaded, 'stream is too far ahead of the recording pipeline', { retryable: true });
    }
    // A burst (a sender ahead of real time) or a catch-up goes at once; real-time audio waits for the tick.
    if (this.#open && (this.#pendingMediaMs >= 2 * BATCH_MEDIA_MS || this.#catchUpFrom !== null)) void this.#pump();
  }

  /**
   * Every frame goes to the journal first. It is also kept in memory for the next batch, unless memory is
   * full: then this and every later frame is read back from the journal once the pipeline gets there
   * (frames stay in order: memory holds only older ones).
   */
  add(frame: InputFrame, arrivedAt: number): void {
    if (this.#stopped) return;
    this.#journal.add(frame);
    const index = this.#journaledFrames++;
    if (this.#catchUpFrom === null && this.#pendingMediaMs + frameMediaMs(frame) > this.#limits.maxPendingMediaMs) {
      this.#catchUpFrom = index;
      this.#catchUpBytes = this.#journal.bytes;
      this.#hooks.onCatchUpStarted();
    }
    if (this.#catchUpFrom !== null) return;
    this.#pending.push(frame);
    this.#pendingArrivals.push(arrivedAt);
    this.#pendingMediaMs += frameMediaMs(frame);
  }

  /**
   * The gateway's tick: group commit of the journal, the batch of a call with enough audio waiting, and a batch
   * for a quiet call whose oldest frame waited.
   */
  tick(now: number): void {
    if (!this.#open) return;
    if (this.#journal.dirty) {
      this.#journal.flush().catch((err: unknown) => this.#hooks.onFailure(toCallvaultError(err, ErrorCode.SpoolFailed)));
    }
    const oldest = this.#pendingArrivals[0];
    if (this.#pendingMediaMs >= BATCH_READY_MEDIA_MS || (oldest !== undefined && now - oldest >= BATCH_MAX_WAIT_MS)) void this.#pump();
  }

  /**
   * Runs everything accepted through the pipeline — what memory holds, then whatever is still to catch up
   * on from the journal — and then the final batch, which seals the container. Stops early if stopped.
   */
  async drain(): Promise<void> {
    this.#open = false;
    for (;;) {
      while (this.#inFlight) await this.#inFlight;
      if (this.#stopped || this.#catchUpFrom === null) break;
      await this.#pump();
    }
    if (!this.#stopped) await this.#pump(true);
  }

  /** Discards what memory holds and starts nothing more; the journal keeps every frame. */
  stop(): void {
    this.#open = false;
    this.#stopped = true;
    this.#pending = [];
    this.#pendingArrivals = [];
    this.#pendingMediaMs = 0;
  }

  #pump(final = false): Promise<void> {
    if (this.#inFlight) return this.#inFlight;
    if (this.#pending.length === 0 && this.#catchUpFrom !== null) return this.#track(this.#catchUp());
    if (this.#pending.length === 0 && !final) return Promise.resolve();
    const frames = this.#pending;
    const arrivals = this.#pendingArrivals;
    const journalFrom = (this.#catchUpFrom ?? this.#journaledFrames) - frames.length;
    this.#pending = [];
    this.#pendingArrivals = [];
    this.#pendingMediaMs = 0;
    return this.#track(this.#run(frames, final, arrivals, journalFrom));
  }

  /** One catch-up batch: frames read back from the journal (made durable first, so they can be read). */
  async #catchUp(): Promise<void> {
    const from = this.#catchUpFrom!;
    await this.#journal.flush();
    const frames = await this.#journal.readFrames(from, CATCH_UP_FRAMES);
    this.#catchUpFrom = from + frames.length;
    this.#catchUpBytes = this.#journal.bytes;
    if (this.#catchUpFrom >= this.#journaledFrames) this.#catchUpFrom = null;
    if (frames.length > 0 && !this.#stopped) await this.#run(frames, false, [], from);
  }

  /** Registers a batch as the one in flight; when it ends, the next one starts if enough is waiting. */
  #track(batch: Promise<void>): Promise<void> {
    const inFlight = batch
      .catch((err: unknown) => this.#hooks.onFailure(toCallvaultError(err, ErrorCode.PipelineFailed)))
      .finally(() => {
        this.#inFlight = null;
        if (this.#open && (this.#pendingMediaMs >= BATCH_MEDIA_MS || this.#catchUpFrom !== null)) void this.#pump();
      });
    this.#inFlight = inFlight;
    return inFlight;
  }
}
