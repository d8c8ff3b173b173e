/**
 * Places a track's frames on the recording's timeline (sample positions at the track's rate, counted from
 * the moment the recording started).
 *
 * The first frame is anchored on wall time; later frames follow contiguously so that network jitter never
 * shifts audio. After a discontinuity (frames stopped for longer than the gap threshold, or the caller said
 * so: mute, unpublish, rejoin) the next frame is anchored on wall time again, so the pipeline fills the
 * absence with silence of the right length. A re-anchor never moves backwards: overlapping audio would be
 * dropped by the pipeline, so a track that got ahead of wall time simply continues.
 *
 * A pause during which our own event loop did not run is not the sender's: audio sent in real time waits in
 * the socket and arrives as a burst once the loop runs again. With a `loop` watch, the time the loop stalled
 * within a pause is taken off it before it is compared with the gap threshold, and a genuine gap that
 * contained a stall is re-anchored on the wall time less the stall, so the silence inserted is the pause
 * the sender made, not the one we made. Explicit breaks (mute, unpublish, rejoin) anchor on wall time as before.
 */
export interface TrackTimelineOptions {
  /** Wall time (ms) of the recording's start: position 0. */
  originMs: number;
  sampleRate: number;
  /** Frames that stop for longer than this count as a discontinuity. */
  gapThresholdMs?: number;
  /** The event loop's watch; without one every pause counts as the sender's. */
  loop?: LoopStallClock;
}

import type { LoopStallClock } from './loop-watch.js';

export const DEFAULT_GAP_THRESHOLD_MS = 500;

export class TrackTimeline {
  readonly originMs: number;
  readonly sampleRate: number;
  readonly gapThresholdMs: number;
  #nextPosition: number | null = null;
  #lastArrival = Number.NEGATIVE_INFINITY;
  #broken = true;
  readonly #loop: LoopStallClock | undefined;
  /** The loop clock's reading when the last frame was placed. */
  #lastLoopAt = Number.NaN;

  constructor(options: TrackTimelineOptions) {
    this.#loop = options.loop;
    this.originMs = options.originMs;
    this.sampleRate = options.sampleRate;
    this.gapThresholdMs = options.gapThresholdMs ?? DEFAULT_GAP_THRESHOLD_MS;
  }

  /** The position of a frame of `samples` samples that arrived at `arrivedAt` (wall ms). */
  place(arrivedAt: number, samples: number): number {
    const position = this.peek(arrivedAt);
    this.#nextPosition = position + samples;
    this.#lastArrival = arrivedAt;
    if (this.#loop) this.#lastLoopAt = this.#loop.now();
    this.#broken = false;
    return position;
  }

  /** Where a frame arriving at `arrivedAt` would be placed, without placing it. */
  peek(arrivedAt: number): number {
    if (this.#nextPosition === null) return this.wallPosition(arrivedAt);
    if (this.#broken) return Math.max(this.wallPosition(arrivedAt), this.#nextPosition);
    const pause = arrivedAt - this.#lastArrival;
    // Our share of the pause, at most all of it (the loop's clock and the arrival clock are read separately).
    const stalled = Math.min(Math.max(0, pause), this.#stalledSinceLastFrame());
    if (pause - stalled <= this.gapThresholdMs) return this.#nextPosition;
    return Math.max(this.wallPosition(arrivedAt - stalled), this.#nextPosition);
  }

  #stalledSinceLastFrame(): number {
    if (!this.#loop || Number.isNaN(this.#lastLoopAt)) return 0;
    return this.#loop.stalledMs(this.#lastLoopAt, this.#loop.now());
  }

  /** The next frame is anchored on wall time again (mute, unmute, unpublish, reconnect). */
  breakContinuity(): void {
    this.#broken = true;
  }

  wallPosition(at: number): number {
    return Math.max(0, Math.round(((at - this.originMs) * this.sampleRate) / 1000));
  }

  /** The position just after the last placed frame, or null before the first. */
  get nextPosition(): number | null {
    return this.#nextPosition;
  }
}
