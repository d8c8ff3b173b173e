import { describe, expect, test } from 'vitest';
import { RESAMPLER_SPEC } from '../../dist/pipeline/index.js';
import {
  designResampler,
  firstInputFor,
  lastInputFor,
  resampleAccumulate,
  resampleAccumulateScalar,
  type ResamplerStage,
} from '../../dist/pipeline/resampler.js';
import { db } from '../support/audio.js';
import { seededRandom } from '../support/random.js';

/** Every ratio the gateway can meet (input rates of Twilio, LiveKit, SIP and the simulator; the four output rates). */
const RATIOS: Array<[number, number]> = [
  [8000, 16000],
  [8000, 24000],
  [8000, 48000],
  [16000, 24000],
  [16000, 48000],
  [24000, 48000],
  [48000, 24000],
  [48000, 16000],
  [48000, 8000],
  [24000, 16000],
  [16000, 8000],
  [24000, 8000],
  [44100, 48000],
];

type Resample = typeof resampleAccumulate;

/** Outputs [0, outputs) of `input` (timeline 0 …), silence before and after it, computed in the given pieces. */
function resample(design: ResamplerStage, input: Int16Array, outputs: number, pieces: number[] = [outputs], run: Resample = resampleAccumulate): Float64Array {
  const start = firstInputFor(design, 0);
  const padded = new Int16Array(lastInputFor(design, outputs - 1) + 1 - start);
  padded.set(input.subarray(0, Math.min(input.length, padded.length + start)), -start);
  const out = new Float64Array(outputs);
  let first = 0;
  for (const count of pieces) {
    run(design, padded, start, first, count, out.subarray(first, first + count));
    first += count;
  }
  return out;
}

/** Amplitude of the component at `frequency` over `length` samples from `from`: exact for whole cycles. */
function amplitudeAt(samples: Float64Array, from: number, length: number, rate: number, frequency: number): number {
  const c = 2 * Math.cos((2 * Math.PI * frequency) / rate);
  let s1 = 0;
  let s2 = 0;
  for (let i = from; i < from + length; i++) {
    const s0 = samples[i]! + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - c * s1 * s2))) / length;
}

describe('resampling kernel', () => {
  /** Each output of `stage` from an impulse at input j < M, against the taps it must have gone through. */
  function impulseResponses(stage: ResamplerStage, check: (got: number, expected: number, label: string) => void): void {
    const { up, down, delay, taps } = stage;
    // An impulse at input j reaches output n through tap n·M + delay − j·L; j < M covers every tap once.
    for (let j = 0; j < down; j++) {
      const input = new Int16Array(j + 1);
      input[j] = 16384;
      const outputs = Math.ceil((taps.length + j * up) / down) + 2;
      const out = resample(stage, input, outputs);
      for (let n = 0; n < outputs; n++) {
        const t = n * down + delay - j * up;
        check(out[n]!, t >= 0 && t < taps.length ? taps[t]! * 16384 : 0, `output ${n}, impulse at ${j}`);
      }
    }
  }

  test.each(RATIOS)('%i → %i: every output applies exactly the design’s taps to the input it reads', (inRate, outRate) => {
    const design = designResampler(inRate, outRate);
    // Products and sums are exact here (one nonzero term, scaled by a power of two): any slip in which
    // tap meets which sample, or a fold that pairs the wrong samples, shows as a mismatch.
    const exact = (got: number, expected: number, label: string): void => {
      expect(got, label).toBe(expected);
    };
    const stages = design.kernel.stages ?? [design];
    for (const stage of stages) impulseResponses(stage, exact);
    if (stages.length > 1) {
      // Through both stages an output sums several products of float32 values: the equivalent prototype, to float32 rounding.
      impulseResponses(design, (got, expected, label) => expect(Math.abs(got - expected), label).toBeLessThan(16384 * 4e-6));
    }
  });

  test.each(RATIOS)('%i → %i: the SIMD kernel and the scalar reference agree to the bit, however the outputs are split', (inRate, outRate) => {
    const design = designResampler(inRate, outRate);
    const random = seededRandom(inRate + outRate);
    const input = Int16Array.from({ length: inRate / 2 }, () => Math.round((random() - 0.5) * 65535));
    const outputs = outRate / 2;
    const reference = resample(design, input, outputs, [outputs], resampleAccumulateScalar);
    const pieces: number[] = [];
    for (let left = outputs; left > 0; ) {
      const size = Math.min(left, 1 + Math.floor(random() * 5000));
      pieces.push(size);
      left -= size;
    }
    for (const split of [[outputs], pieces, Array.from({ length: outputs / 400 }, () => 400)]) {
      const out = resample(design, input, outputs, split);
      expect(Buffer.from(out.buffer).equals(Buffer.from(reference.buffer)), `pieces ${split.length}`).toBe(true);
    }
  });

  test('the ratios the gateway meets run on the WebAssembly SIMD kernel (8 kHz → 48 kHz as ×2 then ×3); 44.1 kHz ↔ 48 kHz on the scalar reference', () => {
    for (const [inRate, outRate] of RATIOS) {
      const { kernel } = designResampler(inRate, outRate);
      const label = `${inRate} → ${outRate}`;
      if (inRate === 8000 && outRate === 48000) {
        expect(kernel.kind, label).toBe('cascade');
        expect(kernel.stages!.map((stage) => [stage.up, stage.down, stage.kernel.kind]), label).toEqual([
          [2, 1, 'simd'],
          [3, 1, 'simd'],
        ]);
        // Its first stage is the 8 kHz → 16 kHz design itself.
        expect(kernel.stages![0]!.taps).toBe(designResampler(8000, 16000).taps);
      } else expect(kernel.kind, label).toBe(inRate === 44100 ? 'scalar' : 'simd');
    }
    expect(designResampler(16000, 16000).kernel.kind).toBe('identity');
  });

  test.each(RATIOS)('%i → %i: measured through the kernel, passband ripple and stopband attenuation meet the spec', (inRate, outRate) => {
    const design = designResampler(inRate, outRate);
    const fN = Math.min(inRate, outRate) / 2;
    const multipleOf4 = (x: number): number => Math.max(4, Math.round(x / 4) * 4);
    // 0.4 s per tone, measured over the 0.25 s from 0.1 s: every multiple of 4 Hz makes whole cycles.
    const segmentIn = Math.round(0.4 * inRate);
    const from = Math.round(0.1 * outRate);
    const length = Math.round(0.25 * outRate);
    const outputs = Math.round(0.4 * outRate);
    const random = seededRandom(outRate);
    const amplitude = 16000;
    const toneThrough = (frequency: number): Float64Array => {
      const tone = new Int16Array(segmentIn);
      // TPDF dither: int16 rounding must not leave spurs where images and aliases are looked for.
      for (let n = 0; n < segmentIn; n++) tone[n] = Math.round(amplitude * Math.sin((2 * Math.PI * frequency * n) / inRate) + random() - random());
      return resample(design, tone, outputs);
    };
    let gainMin = Infinity;
    let gainMax = -Infinity;
    for (let f = 4; f <= RESAMPLER_SPEC.passbandEdgeFraction * fN; f = multipleOf4(f + fN / 24)) {
      const gain = db(amplitudeAt(toneThrough(f), from, length, outRate, f) / amplitude);
      gainMin = Math.min(gainMin, gain);
      gainMax = Math.max(gainMax, gain);
    }
    expect(gainMax - gainMin).toBeLessThan(RESAMPLER_SPEC.passbandRippleDb);
    expect(Math.max(Math.abs(gainMax), Math.abs(gainMin))).toBeLessThan(RESAMPLER_SPEC.passbandRippleDb / 2);
    let worst = -Infinity;
    if (outRate > inRate) {
      // Images of input tones up to fN; tones just below fN image just above it, the hardest place.
      for (let f = multipleOf4(0.6 * fN); f < fN; f = multipleOf4(f + fN / 60)) {
        const out = toneThrough(f);
        for (let k = 1; k * inRate - f < outRate / 2; k++) {
          for (const image of [k * inRate - f, k * inRate + f]) {
            if (image < outRate / 2) worst = Math.max(worst, db(amplitudeAt(out, from, length, outRate, image) / amplitude));
          }
        }
      }
    } else {
      // Everything from fN to the input Nyquist must be gone; the aliases land folded into the output band.
      for (let f = fN + 4; f < inRate / 2; f = multipleOf4(f + (f < 1.2 * fN ? fN / 60 : fN / 6))) {
        let alias = f % outRate;
        if (alias > outRate / 2) alias = outRate - alias;
        if (alias === 0 || alias === outRate / 2) continue;
        worst = Math.max(worst, db(amplitudeAt(toneThrough(f), from, length, outRate, alias) / amplitude));
      }
    }
    expect(worst).toBeLessThan(-RESAMPLER_SPEC.stopbandAttenuationDb);
  });
});
