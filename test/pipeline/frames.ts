/** Building frames and driving the DSP in the pipeline tests. */
import { mulawEncode, processBatch } from '../../dist/pipeline/index.js';
import type { CallDspState, InputFrame, BatchStats } from '../../dist/pipeline/index.js';
import { pcm16ToBytes } from '../support/audio.js';

export interface TrackSpec {
  trackId: string;
  role: 'caller' | 'agent';
  encoding: 'mulaw' | 'pcm_s16le';
  sampleRate: number;
}

export const twilioInbound: TrackSpec = { trackId: 'inbound', role: 'caller', encoding: 'mulaw', sampleRate: 8000 };
export const twilioOutbound: TrackSpec = { trackId: 'outbound', role: 'agent', encoding: 'mulaw', sampleRate: 8000 };

export function frame(track: TrackSpec, position: number, samples: Int16Array): InputFrame {
  return {
    ...track,
    position,
    data: track.encoding === 'mulaw' ? mulawEncode(samples) : pcm16ToBytes(samples),
  };
}

/**
 * Cuts `samples` (timeline positions `start` …) into frames of `frameSamples`, the last one possibly
 * shorter. `skip` leaves chosen frame indices out (packet loss).
 */
export function chunk(
  track: TrackSpec,
  samples: Int16Array,
  frameSamples: number,
  options: { start?: number; skip?: ReadonlySet<number> } = {},
): InputFrame[] {
  const start = options.start ?? 0;
  const frames: InputFrame[] = [];
  for (let offset = 0, index = 0; offset < samples.length; offset += frameSamples, index++) {
    if (options.skip?.has(index)) continue;
    frames.push(frame(track, start + offset, samples.subarray(offset, Math.min(samples.length, offset + frameSamples))));
  }
  return frames;
}

/** Frames of several tracks interleaved by position, the way a live stream delivers them. */
export function interleave(...tracks: InputFrame[][]): InputFrame[] {
  const all = tracks.flatMap((frames, t) => frames.map((f, i) => ({ f, t, i, time: f.position / f.sampleRate })));
  all.sort((a, b) => a.time - b.time || a.t - b.t || a.i - b.i);
  return all.map((x) => x.f);
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export interface RunResult {
  pcm: Uint8Array;
  state: CallDspState;
  /** Per-batch counters summed; emitted/duration from the last batch. */
  stats: BatchStats;
  batches: Array<{ pcmBytes: number; stats: BatchStats }>;
}

/**
 * Feeds the batches in order (the last one final unless `final: false`). With `clone`, the state is
 * structured-cloned before every batch, as crossing into a worker thread does.
 */
export function run(
  state: CallDspState,
  batches: InputFrame[][],
  options: { clone?: boolean; final?: boolean } = {},
): RunResult {
  const parts: Uint8Array[] = [];
  const perBatch: RunResult['batches'] = [];
  const total: BatchStats = {
    framesAccepted: 0,
    duplicateSamplesDropped: 0,
    lateSamplesDropped: 0,
    gapSamplesFilled: 0,
    emittedSamples: 0,
    durationSamples: 0,
  };
  let current = state;
  const final = options.final ?? true;
  batches.forEach((frames, i) => {
    const input = options.clone ? structuredClone(current) : current;
    const result = processBatch(input, frames, { final: final && i === batches.length - 1 });
    current = result.state;
    parts.push(result.pcm);
    perBatch.push({ pcmBytes: result.pcm.length, stats: result.stats });
    total.framesAccepted += result.stats.framesAccepted;
    total.duplicateSamplesDropped += result.stats.duplicateSamplesDropped;
    total.lateSamplesDropped += result.stats.lateSamplesDropped;
    total.gapSamplesFilled += result.stats.gapSamplesFilled;
    total.emittedSamples = result.stats.emittedSamples;
    total.durationSamples = result.stats.durationSamples;
  });
  return { pcm: concatBytes(parts), state: current, stats: total, batches: perBatch };
}

export { seededRandom } from '../support/random.js';

export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
