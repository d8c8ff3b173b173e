/**
 * Audio preparation for recognisers trained on wideband (16 kHz) speech: resampling with the project's
 * resampler, and a noise floor for the empty upper band of telephone audio.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { designResampler, firstInputFor, lastInputFor, resampleAccumulate } from '../pipeline/resampler.js';

/** Outputs resampled between two yields to the event loop (a few ms of work): the gateway keeps serving calls. */
const OUTPUTS_PER_STEP = 64 * 1024;

function* resampleSteps(input: Int16Array, inRate: number, outRate: number, out: Int16Array): Generator<void> {
  const design = designResampler(inRate, outRate);
  const count = out.length;
  if (count === 0) return;
  const start = Math.min(0, firstInputFor(design, 0));
  const end = Math.max(input.length, lastInputFor(design, count - 1) + 1);
  const padded = new Int16Array(end - start);
  padded.set(input, -start);
  const step = new Float64Array(Math.min(OUTPUTS_PER_STEP, count));
  for (let first = 0; first < count; first += step.length) {
    const n = Math.min(step.length, count - first);
    step.fill(0);
    resampleAccumulate(design, padded, start, first, n, step);
    for (let i = 0; i < n; i++) out[first + i] = Math.max(-32768, Math.min(32767, Math.round(step[i]!)));
    yield;
  }
}

function outputLength(input: Int16Array, inRate: number, outRate: number): number {
  return Math.floor((input.length * outRate) / inRate);
}

/** The whole of `input` at `outRate` (the silence before and after it is zeros); a copy when the rates match. */
export function resampleWhole(input: Int16Array, inRate: number, outRate: number): Int16Array {
  if (inRate === outRate) return input.slice();
  const out = new Int16Array(outputLength(input, inRate, outRate));
  for (const _ of resampleSteps(input, inRate, outRate, out));
  return out;
}

/** resampleWhole in steps, yielding to the event loop between them (for a recording's worth of audio). */
export async function resampleWholeAsync(input: Int16Array, inRate: number, outRate: number): Promise<Int16Array> {
  if (inRate === outRate) return input.slice();
  const out = new Int16Array(outputLength(input, inRate, outRate));
  for (const _ of resampleSteps(input, inRate, outRate, out)) await yieldToEventLoop();
  return out;
}

/** Energy above this fraction of the total, in the band over 4 kHz, means the audio is wideband. */
const WIDEBAND_ENERGY_FRACTION = 1e-3;
/** Below this mean square (about −70 dBFS) a channel is silent: nothing to fill, nothing to hear. */
const SILENT_MEAN_SQUARE = 10;

/** Audio examined by isNarrowband: its first minute says what the line was. */
const NARROWBAND_PROBE_SAMPLES = 60 * 16_000;

/**
 * Whether 16 kHz audio carries nothing above 4 kHz but has sound below (telephone audio: 8 kHz μ-law, or a
 * recording at a higher rate made from it), judged on its first minute. The upper band is what is left once
 * the audio has been through 8 kHz and back.
 */
export function isNarrowband(audio16k: Int16Array): boolean {
  const pcm16k = audio16k.subarray(0, NARROWBAND_PROBE_SAMPLES);
  let total = 0;
  for (let i = 0; i < pcm16k.length; i++) total += pcm16k[i]! * pcm16k[i]!;
  if (pcm16k.length === 0 || total / pcm16k.length < SILENT_MEAN_SQUARE) return false;
  const low = resampleWhole(resampleWhole(pcm16k, 16_000, 8_000), 8_000, 16_000);
  let high = 0;
  const n = Math.min(low.length, pcm16k.length);
  for (let i = 0; i < n; i++) {
    const d = pcm16k[i]! - low[i]!;
    high += d * d;
  }
  return high / total < WIDEBAND_ENERGY_FRACTION;
}

/** Peak amplitude of the 4–8 kHz noise floor (about −50 dBFS RMS). */
export const HIGH_BAND_NOISE_AMPLITUDE = 200;

/**
 * Adds a constant low noise floor in 4–8 kHz to 16 kHz audio, in place: white noise smoothed over two
 * samples (a low-pass) and multiplied by (−1)ⁿ, which mirrors it into the upper band. Deterministic (a fixed
 * seed), so one recording always gives one transcript.
 */
export function addHighBandNoise(pcm16k: Int16Array, amplitude = HIGH_BAND_NOISE_AMPLITUDE): void {
  let seed = 1;
  let previous = 0;
  for (let i = 0; i < pcm16k.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    const white = seed / 0x7fffffff - 0.5;
    const smoothed = (white + previous) / 2;
    previous = white;
    const value = pcm16k[i]! + (i % 2 === 0 ? 1 : -1) * smoothed * amplitude;
    pcm16k[i] = Math.max(-32768, Math.min(32767, Math.round(value)));
  }
}
