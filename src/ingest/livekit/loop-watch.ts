import { performance } from 'node:perf_hooks';

/**
 * What a timeline needs to know about its own process: a clock, and how long within an interval of that
 * clock the event loop did not run. Audio that a sender sent in real time while our loop was not running
 * waits in the socket and arrives as a burst afterwards; that pause is ours, not the sender's.
 */
export interface LoopStallClock {
  /** Monotonic ms, the clock `stalledMs` is measured on. */
  now(): number;
  /** Time within [from, to] the loop did not run beyond its period, the overdue part still in progress included. */
  stalledMs(from: number, to: number): number;
}

export const DEFAULT_LOOP_WATCH_PERIOD_MS = 20;
/** Stalls older than this are forgotten: a pause that long is a discontinuity whatever part of it was ours. */
const STALL_RETENTION_MS = 60_000;

/**
 * Watches the event loop with a periodic timer and records when it actually ran. A stall is the time
 * between two runs beyond the period. The timer runs only while someone holds the watch (`retain`).
 */
export class EventLoopWatch implements LoopStallClock {
  readonly periodMs: number;
  readonly #clock: () => number;
  /** Past stalls, [start, end] in clock ms, oldest first. */
  readonly #stalls: Array<[number, number]> = [];
  #lastRun = 0;
  #timer: NodeJS.Timeout | undefined;
  #holders = 0;

  constructor(options: { periodMs?: number; clock?: () => number } = {}) {
    this.periodMs = options.periodMs ?? DEFAULT_LOOP_WATCH_PERIOD_MS;
    this.#clock = options.clock ?? (() => performance.now());
  }

  now(): number {
    return this.#clock();
  }

  /** Starts watching (if not already); the returned function stops holding it, idempotently. */
  retain(): () => void {
    this.#holders++;
    if (this.#timer === undefined) {
      this.#lastRun = this.#clock();
      this.#timer = setInterval(() => this.#ran(), this.periodMs);
      // The watch never keeps a process alive on its own.
      this.#timer.unref();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holders--;
      if (this.#holders === 0 && this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        this.#stalls.length = 0;
      }
    };
  }

  get watching(): boolean {
    return this.#timer !== undefined;
  }

  #ran(): void {
    const at = this.#clock();
    const due = this.#lastRun + this.periodMs;
    if (at > due) this.#stalls.push([due, at]);
    this.#lastRun = at;
    while (this.#stalls.length > 0 && this.#stalls[0]![1] < at - STALL_RETENTION_MS) this.#stalls.shift();
  }

  stalledMs(from: number, to: number): number {
    if (!(to > from) || this.#timer === undefined) return 0;
    let total = 0;
    for (const [start, end] of this.#stalls) total += overlap(start, end, from, to);
    // A stall in progress: a burst read in the I/O phase right after a stall is handled before timers run again.
    total += overlap(this.#lastRun + this.periodMs, to, from, to);
    return total;
  }
}

function overlap(start: number, end: number, from: number, to: number): number {
  return Math.max(0, Math.min(end, to) - Math.max(start, from));
}

/** The process has one event loop; its live timelines share one watch. */
export const processLoopWatch = new EventLoopWatch();
