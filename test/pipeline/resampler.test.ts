import { describe, expect, test } from 'vitest';
import { createCallDspState, designResampler, RESAMPLER_SPEC } from '../../dist/pipeline/index.js';
import type { OutputRate } from '../../dist/pipeline/index.js';
import { db, generateTone, goertzelPower, pcm16FromBytes, rms, toneAmplitude } from '../support/audio.js';
import { chunk, run, type TrackSpec } from './frames.js';

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
  [44100, 48000],
];

/** Magnitude response in dB relative to the passband gain L, sampled finely enough to catch every sidelobe. */
function responseDb(taps: Float64Array, up: number, normalisedFrequency: number): number {
  return db(Math.sqrt(goertzelPower(taps, 1, normalisedFrequency)) / up);
}

/** Resamples one mono tone through the DSP (pcm_s16le in, one 100 ms batch after another, then final). */
function resampleTone(inRate: number, outRate: OutputRate, frequency: number, seconds: number, amplitude = 12000): Int16Array {
  const track: TrackSpec = { trackId: 't', role: 'caller', encoding: 'pcm_s16le', sampleRate: inRate };
  const tone = generateTone({ frequency, sampleRate: inRate, samples: Math.round(seconds * inRate), amplitude });
  const frames = chunk(track, tone, inRate / 50);
  const batches: (typeof frames)[] = [];
  for (let i = 0; i < frames.length; i += 5) batches.push(frames.slice(i, i + 5));
  return pcm16FromBytes(run(createCallDspState({ outputRate: outRate, stereo: false }), batches).pcm);
}

/** The middle of a signal, clear of the filter's start-up and the end of the tone. */
function middle(samples: Int16Array, from = 0.25, to = 0.75): Int16Array {
  return samples.subarray(Math.round(from * samples.length), Math.round(to * samples.length));
}

describe('resampling filter design', () => {
  test.each(RATIOS)('%i Hz → %i Hz meets the documented passband and stopband spec', (inRate, outRate) => {
    const design = designResampler(inRate, outRate);
    const upsampledRate = inRate * design.up;
    expect(design.up * inRate).toBe(design.down * outRate);
    expect(design.taps.length % 2).toBe(1);
    const step = 1 / (8 * design.taps.length);
    let passMin = Infinity;
    let passMax = -Infinity;
    for (let f = 0; f <= design.passbandEdgeHz / upsampledRate; f += step) {
      const gain = responseDb(design.taps, design.up, f);
      passMin = Math.min(passMin, gain);
      passMax = Math.max(passMax, gain);
    }
    let stopMax = -Infinity;
    for (let f = design.stopbandEdgeHz / upsampledRate; f <= 0.5; f += step) {
      stopMax = Math.max(stopMax, responseDb(design.taps, design.up, f));
    }
    expect(design.passbandEdgeHz).toBeCloseTo((Math.min(inRate, outRate) / 2) * RESAMPLER_SPEC.passbandEdgeFraction, 6);
    expect(design.stopbandEdgeHz).toBeCloseTo(Math.min(inRate, outRate) / 2, 6);
    expect(passMax - passMin).toBeLessThan(RESAMPLER_SPEC.passbandRippleDb);
    expect(Math.max(Math.abs(passMax), Math.abs(passMin))).toBeLessThan(RESAMPLER_SPEC.passbandRippleDb / 2);
    expect(stopMax).toBeLessThan(-RESAMPLER_SPEC.stopbandAttenuationDb);
    // Cost stays near 62 taps per input sample read when upsampling (62·M/L when downsampling).
    expect(design.tapsPerPhase).toBeLessThanOrEqual(Math.ceil((64 * design.down) / Math.min(design.up, design.down)));
  });

  test('equal rates are an exact identity', () => {
    const design = designResampler(8000, 8000);
    expect(Array.from(design.taps)).toEqual([1]);
    const tone = generateTone({ frequency: 1000, sampleRate: 8000, samples: 8000, amplitude: 20000 });
    const out = resampleTone(8000, 8000, 1000, 1, 20000);
    expect(out).toEqual(tone);
  });
});

describe('resampling audio', () => {
  const passbandCases = RATIOS.filter(([, out]) => [8000, 16000, 24000, 48000].includes(out)).flatMap(([inRate, outRate]) => {
    const edge = (Math.min(inRate, outRate) / 2) * 0.8;
    return [
      [inRate, outRate, 1000],
      [inRate, outRate, Math.round(edge)],
    ] as Array<[number, number, number]>;
  });

  test.each(passbandCases)('%i → %i: a %i Hz tone keeps its frequency and amplitude (±0.1 dB)', (inRate, outRate, frequency) => {
    const amplitude = 12000;
    const out = resampleTone(inRate, outRate as OutputRate, frequency, 1, amplitude);
    expect(out.length).toBe(outRate);
    const segment = middle(out);
    expect(Math.abs(db(toneAmplitude(segment, outRate, frequency) / amplitude))).toBeLessThan(0.1);
    // All the energy is that tone: nothing moved to another frequency.
    expect(Math.abs(db(rms(segment) / (amplitude / Math.SQRT2)))).toBeLessThan(0.1);
  });

  test.each([
    [48000, 16000, 10000],
    [48000, 8000, 5000],
    [16000, 8000, 6000],
    [24000, 16000, 9000],
    [48000, 24000, 15000],
  ])('%i → %i: a %i Hz tone above the output Nyquist is suppressed by ≥ 60 dB (no aliasing)', (inRate, outRate, frequency) => {
    const amplitude = 12000;
    const out = resampleTone(inRate, outRate as OutputRate, frequency, 1, amplitude);
    const segment = middle(out);
    const alias = Math.abs(outRate - frequency);
    expect(db(toneAmplitude(segment, outRate, alias) / amplitude)).toBeLessThan(-60);
    expect(db(rms(segment) / (amplitude / Math.SQRT2))).toBeLessThan(-60);
  });

  test('8k → 48k: a 1 kHz tone leaves no images at 7, 9, 15, 17 kHz', () => {
    const amplitude = 12000;
    const out = resampleTone(8000, 48000, 1000, 1, amplitude);
    const segment = middle(out);
    expect(Math.abs(db(toneAmplitude(segment, 48000, 1000) / amplitude))).toBeLessThan(0.1);
    for (const image of [7000, 9000, 15000, 17000, 23000]) {
      expect(db(toneAmplitude(segment, 48000, image) / amplitude)).toBeLessThan(-70);
    }
  });

  test.each([8000, 16000, 24000, 48000] as OutputRate[])(
    'tracks at 8k, 16k, 24k and 48k carrying the same tone come out sample-aligned at %i Hz',
    (outRate) => {
      const amplitude = 12000;
      const outputs = [8000, 16000, 24000, 48000].map((inRate) => resampleTone(inRate, outRate, 700, 1, amplitude));
      const reference = middle(outputs[0]!);
      for (const other of outputs.slice(1)) {
        const segment = middle(other);
        let worst = 0;
        for (let n = 0; n < segment.length; n++) worst = Math.max(worst, Math.abs(segment[n]! - reference[n]!));
        // A one-sample shift at 48 kHz would already differ by ~1100 here.
        expect(worst).toBeLessThan(12);
      }
    },
  );
});
