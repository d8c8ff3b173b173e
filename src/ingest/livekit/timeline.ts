/**
 * Places a track's frames on the recording's timeline (sample positions at the track's rate, counted from
 * the moment the recording started).
 *
 * The first frame is anchored on wall time; later frames follow contiguously so that network jitter never
 * shifts audio. After a discontinuity (frames stopped for longer than the gap threshold, or the caller said
 * so: mute, unpublish, rejoin) the next frame is anchored on wall time again, so the pipeline fills the
 * absence with silence of the right length. A re-anchor never moves backwards: overlapping audio would be
 * dropped by the pipeline, so a track that got ahead of wall time simply continues.
 */
export interface TrackTimelineOptions {
  /** Wall time (ms) of the recording's start: position 0. */
  originMs: number;
  sampleRate: number;
  /** Frames that stop for longer than this count as a discontinuity. */
  gapThresholdMs?: number;
}

export const DEFAULT_GAP_THRESHOLD_MS = 500;

export class TrackTimeline {
  readonly originMs: number;
  readonly sampleRate: number;
  readonly gapThresholdMs: number;
  #nextPosition: number | null = null;
  #lastArrival = Number.NEGATIVE_INFINITY;
  #broken = true;

  constructor(options: TrackTimelineOptions) {
    this.originMs = options.originMs;
    this.sampleRate = options.sampleRate;
    this.gapThresholdMs = options.gapThresholdMs ?? DEFAULT_GAP_THRESHOLD_MS;
  }

  /** The position of a frame of `samples` samples that arrived at `arrivedAt` (wall ms). */
  place(arrivedAt: number, samples: number): number {
    const position = this.peek(arrivedAt);
    this.#nextPosition = position + samples;
    this.#lastArrival = arrivedAt;
    this.#broken = false;
    return position;
  }

  /** Where a frame arriving at `arrivedAt` would be placed, without placing it. */
  peek(arrivedAt: number): number {
    const continuous = !this.#broken && this.#nextPosition !== null && arrivedAt - this.#lastArrival <= this.gapThresholdMs;
    if (continuous) return this.#nextPosition as number;
    const wall = this.wallPosition(arrivedAt);
    return this.#nextPosition === null ? wall : Math.max(wall, this.#nextPosition);
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
