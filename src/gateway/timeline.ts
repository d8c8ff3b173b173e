/**
 * A recording's own timeline, derived from the call's: where it starts (never retroactive), the spans
 * paused (cut out, or kept as silence), and the spans lost to a failed pipeline batch (gaps). Pure: no I/O,
 * no clock of its own; the recording persists what this computes.
 */
import type { InputFrame } from '../pipeline/index.js';

export type PauseBehavior = 'skip' | 'silence';

export interface PauseRecord {
  behavior: PauseBehavior;
  pausedAt: string;
  resumedAt: string | null;
  /** The paused span on the call's media timeline. */
  fromMediaMs: number;
  toMediaMs: number | null;
}

/** A span of one track's audio that the pipeline lost; it plays as exact-length silence. */
export interface GapRecord {
  track: string;
  fromMs: number;
  toMs: number;
  reason: string;
}

/** A synthetic track that carries the silence of a pause the call ended in, so the duration covers it. */
export const PAUSE_SILENCE_TRACK = '__pause__';
/** The rate of that synthetic track: the lowest any source uses, resampled like any other track. */
const PAUSE_SILENCE_RATE = 8000;

function bytesPerSample(frame: InputFrame): number {
  return frame.encoding === 'pcm_s16le' ? 2 : 1;
}

/** How much audio a frame carries, in ms. */
export function frameMediaMs(frame: InputFrame): number {
  return (frame.data.byteLength / bytesPerSample(frame) / frame.sampleRate) * 1000;
}

export class RecordingTimeline {
  readonly #originMs: number;
  readonly #pauses: PauseRecord[] = [];
  #open: PauseRecord | null = null;
  readonly #gaps: GapRecord[] = [];

  /** `originMs`: where on the call's media timeline the recording starts. */
  constructor(originMs = 0) {
    this.#originMs = originMs;
  }

  get paused(): boolean {
    return this.#open !== null;
  }

  get pauses(): readonly PauseRecord[] {
    return this.#pauses;
  }

  get gaps(): readonly GapRecord[] {
    return this.#gaps;
  }

  /** Opens a pause at `mediaMs` (not before the origin). The caller checks that none is open. */
  pause(behavior: PauseBehavior, mediaMs: number, at: string): PauseRecord {
    const pause: PauseRecord = { behavior, pausedAt: at, resumedAt: null, fromMediaMs: Math.max(mediaMs, this.#originMs), toMediaMs: null };
    this.#open = pause;
    this.#pauses.push(pause);
    return pause;
  }

  /** Closes the open pause at `mediaMs` (not before it opened). The caller checks that one is open. */
  resume(mediaMs: number, at: string): PauseRecord {
    const pause = this.#open!;
    pause.toMediaMs = Math.max(mediaMs, pause.fromMediaMs);
    pause.resumedAt = at;
    this.#open = null;
    return pause;
  }

  /**
   * The call ends while paused: the pause closes at `mediaEndMs`, and a `silence` pause yields the frame of
   * silence that carries the recording's duration up to that point (null when there is nothing to add).
   */
  closeOpenPause(mediaEndMs: number | undefined, at: string): { pause: PauseRecord; silence: InputFrame | null } | null {
    const pause = this.#open;
    if (!pause) return null;
    const end = Math.max(mediaEndMs ?? pause.fromMediaMs, pause.fromMediaMs);
    this.resume(end, at);
    if (pause.behavior !== 'silence' || end <= pause.fromMediaMs) return { pause, silence: null };
    const perMs = PAUSE_SILENCE_RATE / 1000;
    const pauseStart = Math.round(pause.fromMediaMs * perMs);
    const samples = Math.round((end - pause.fromMediaMs) * perMs);
    return {
      pause,
      silence: {
        trackId: PAUSE_SILENCE_TRACK,
        role: 'caller',
        encoding: 'pcm_s16le',
        sampleRate: PAUSE_SILENCE_RATE,
        position: pauseStart - Math.round(this.#originMs * perMs) - this.#skippedBefore(pauseStart, perMs),
        data: new Uint8Array(samples * 2),
      },
    };
  }

  /**
   * Moves a frame from the call's timeline onto the recording's: cuts what precedes the origin and what
   * falls inside any pause (by position, so a lagging track's paused audio is dropped even if it arrives
   * after the resume, and its audio from before the pause is kept even if it arrives during it), then
   * shifts what remains left by the `skip` pauses before it.
   */
  place(frame: InputFrame): InputFrame[] {
    const perMs = frame.sampleRate / 1000;
    const width = bytesPerSample(frame);
    const origin = Math.round(this.#originMs * perMs);
    const start = frame.position;
    const end = start + frame.data.byteLength / width;
    if (this.#pauses.length === 0 && start >= origin) {
      return [origin === 0 ? frame : { ...frame, position: start - origin }];
    }
    let pieces: Array<[number, number]> = [[Math.max(start, origin), end]];
    for (const pause of this.#pauses) {
      const [from, to] = RecordingTimeline.#span(pause, perMs);
      pieces = pieces.flatMap(([a, b]): Array<[number, number]> =>
        b <= from || a >= to ? [[a, b]] : ([[a, Math.min(b, from)], [Math.max(a, to), b]] as Array<[number, number]>).filter(([x, y]) => y > x),
      );
    }
    return pieces
      .filter(([a, b]) => b > a)
      .map(([a, b]) => ({
        ...frame,
        position: a - origin - this.#skippedBefore(a, perMs),
        data: frame.data.subarray((a - start) * width, (b - start) * width),
      }));
  }

  /** Records the spans of a lost batch, one gap per track (the tracks of a batch cover different spans). */
  addGaps(frames: readonly InputFrame[], reason: string): readonly GapRecord[] {
    const spans = new Map<string, { fromMs: number; toMs: number }>();
    for (const frame of frames) {
      const start = (frame.position / frame.sampleRate) * 1000;
      const span = spans.get(frame.trackId) ?? { fromMs: Infinity, toMs: 0 };
      span.fromMs = Math.min(span.fromMs, start);
      span.toMs = Math.max(span.toMs, start + frameMediaMs(frame));
      spans.set(frame.trackId, span);
    }
    const added: GapRecord[] = [];
    for (const [track, span] of spans) added.push({ track, fromMs: Math.round(span.fromMs), toMs: Math.round(span.toMs), reason });
    this.#gaps.push(...added);
    return added;
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
      const [from, to] = RecordingTimeline.#span(pause, perMs);
      if (to <= position) skipped += to - from;
    }
    return skipped;
  }
}
