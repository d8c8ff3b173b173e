import { describe, expect, test } from 'vitest';
import { createCallDspState } from '../../dist/pipeline/index.js';
import type { OutputRate } from '../../dist/pipeline/index.js';
import { db, generateTone, pcm16FromBytes, splitChannels, toneAmplitude } from '../support/audio.js';
import { chunk, interleave, run, twilioInbound, twilioOutbound, type TrackSpec } from './frames.js';

const AMPLITUDE = 8000;

function twilioCall(seconds: number) {
  const caller = generateTone({ frequency: 440, sampleRate: 8000, samples: seconds * 8000, amplitude: AMPLITUDE });
  const agent = generateTone({ frequency: 1000, sampleRate: 8000, samples: seconds * 8000, amplitude: AMPLITUDE });
  return interleave(chunk(twilioInbound, caller, 160), chunk(twilioOutbound, agent, 160));
}

/** The middle second of a 3 s recording. */
function steady(samples: Int16Array, rate: number): Int16Array {
  return samples.subarray(rate, 2 * rate);
}

describe('mixing', () => {
  test.each([8000, 16000, 48000] as OutputRate[])(
    'stereo at %i Hz: the caller (440 Hz) is only on the left, the agent (1000 Hz) only on the right',
    (rate) => {
      const result = run(createCallDspState({ outputRate: rate, stereo: true }), [twilioCall(3)]);
      const [left, right] = splitChannels(result.pcm, 2).map((c) => steady(c, rate));
      // mu-law keeps a tone within ~0.1 dB; the other side's tone must be absent.
      expect(Math.abs(db(toneAmplitude(left!, rate, 440) / AMPLITUDE))).toBeLessThan(0.2);
      expect(Math.abs(db(toneAmplitude(right!, rate, 1000) / AMPLITUDE))).toBeLessThan(0.2);
      expect(db(toneAmplitude(left!, rate, 1000) / AMPLITUDE)).toBeLessThan(-60);
      expect(db(toneAmplitude(right!, rate, 440) / AMPLITUDE)).toBeLessThan(-60);
    },
  );

  test('mono carries both parties', () => {
    const rate = 16000;
    const result = run(createCallDspState({ outputRate: rate, stereo: false }), [twilioCall(3)]);
    const samples = steady(pcm16FromBytes(result.pcm), rate);
    expect(result.pcm.length).toBe(3 * rate * 2);
    expect(Math.abs(db(toneAmplitude(samples, rate, 440) / AMPLITUDE))).toBeLessThan(0.2);
    expect(Math.abs(db(toneAmplitude(samples, rate, 1000) / AMPLITUDE))).toBeLessThan(0.2);
  });

  test('several tracks of one role are summed onto its channel', () => {
    const rate = 16000;
    const callerB: TrackSpec = { trackId: 'PA_second_caller', role: 'caller', encoding: 'pcm_s16le', sampleRate: 48000 };
    const second = generateTone({ frequency: 2000, sampleRate: 48000, samples: 3 * 48000, amplitude: AMPLITUDE });
    const frames = interleave(twilioCall(3), chunk(callerB, second, 960));
    const [left, right] = splitChannels(run(createCallDspState({ outputRate: rate, stereo: true }), [frames]).pcm, 2).map((c) =>
      steady(c, rate),
    );
    expect(Math.abs(db(toneAmplitude(left!, rate, 440) / AMPLITUDE))).toBeLessThan(0.2);
    expect(Math.abs(db(toneAmplitude(left!, rate, 2000) / AMPLITUDE))).toBeLessThan(0.2);
    expect(db(toneAmplitude(right!, rate, 2000) / AMPLITUDE)).toBeLessThan(-60);
  });

  test('a sum beyond int16 saturates instead of wrapping', () => {
    const pcmA: TrackSpec = { trackId: 'a', role: 'caller', encoding: 'pcm_s16le', sampleRate: 8000 };
    const pcmB: TrackSpec = { ...pcmA, trackId: 'b' };
    const loud = generateTone({ frequency: 250, sampleRate: 8000, samples: 8000, amplitude: 30000 });
    const result = run(createCallDspState({ outputRate: 8000, stereo: false }), [[...chunk(pcmA, loud, 160), ...chunk(pcmB, loud, 160)]]);
    const out = pcm16FromBytes(result.pcm);
    let clipped = 0;
    for (let n = 0; n < out.length; n++) {
      const sum = 2 * loud[n]!;
      const expected = Math.max(-32768, Math.min(32767, sum));
      expect(out[n]).toBe(expected);
      if (expected !== sum) clipped++;
    }
    // A good part of every cycle is beyond full scale: the check above really exercised saturation.
    expect(clipped).toBeGreaterThan(out.length / 3);
    expect(Math.max(...out)).toBe(32767);
    expect(Math.min(...out)).toBe(-32768);
  });
});
