import { describe, expect, test } from 'vitest';
import { createCallDspState } from '../../dist/pipeline/index.js';
import type { OutputRate } from '../../dist/pipeline/index.js';
import { generateTone } from '../support/audio.js';
import { chunk, interleave, run, twilioInbound, twilioOutbound, type TrackSpec } from './frames.js';

const OUTPUT_RATES: OutputRate[] = [8000, 16000, 24000, 48000];

function tone(rate: number, samples: number): Int16Array {
  return generateTone({ frequency: 440, sampleRate: rate, samples, amplitude: 5000 });
}

describe('duration', () => {
  test.each(OUTPUT_RATES)('10 s of 20 ms Twilio frames give exactly 10 s at %i Hz', (rate) => {
    const frames = interleave(chunk(twilioInbound, tone(8000, 80000), 160), chunk(twilioOutbound, tone(8000, 80000), 160));
    expect(frames.length).toBe(1000);
    const batches: (typeof frames)[] = [];
    for (let i = 0; i < frames.length; i += 10) batches.push(frames.slice(i, i + 10));
    const result = run(createCallDspState({ outputRate: rate, stereo: true }), batches, { clone: true });
    expect(result.stats.durationSamples).toBe(10 * rate);
    expect(result.stats.emittedSamples).toBe(10 * rate);
    expect(result.pcm.length).toBe(10 * rate * 2 * 2);
  });

  test.each(OUTPUT_RATES)('the last frame of one track ending at 12.34 s sets the duration at %i Hz', (rate) => {
    // Inbound ends at 10 s, outbound at 12.34 s: the recording spans the longer one.
    const frames = interleave(chunk(twilioInbound, tone(8000, 80000), 160), chunk(twilioOutbound, tone(8000, 98720), 160));
    const result = run(createCallDspState({ outputRate: rate, stereo: false }), [frames]);
    expect(result.stats.durationSamples).toBe(Math.ceil(12.34 * rate));
    expect(result.pcm.length).toBe(Math.ceil(12.34 * rate) * 2);
  });

  test.each(OUTPUT_RATES)('a 48 kHz track ending between output samples rounds the duration up at %i Hz', (rate) => {
    const livekit: TrackSpec = { trackId: 'TR_x', role: 'agent', encoding: 'pcm_s16le', sampleRate: 48000 };
    const endSamples = 12.34 * 48000 + 1; // one 48 kHz sample past 12.34 s
    const frames = chunk(livekit, tone(48000, endSamples), 960);
    const result = run(createCallDspState({ outputRate: rate, stereo: true }), [frames]);
    expect(result.stats.durationSamples).toBe(Math.ceil((endSamples * rate) / 48000));
    expect(result.stats.emittedSamples).toBe(result.stats.durationSamples);
  });

  test('the resampler tail is flushed: audio right up to the end survives', () => {
    const livekit: TrackSpec = { trackId: 'TR_x', role: 'caller', encoding: 'pcm_s16le', sampleRate: 48000 };
    const frames = chunk(livekit, tone(48000, 48000), 960);
    const result = run(createCallDspState({ outputRate: 16000, stereo: false }), [frames]);
    const view = new DataView(result.pcm.buffer, result.pcm.byteOffset, result.pcm.byteLength);
    const last = Array.from({ length: 16 }, (_, i) => view.getInt16(result.pcm.length - 32 + 2 * i, true));
    expect(last.some((v) => Math.abs(v) > 1000)).toBe(true);
  });

  test('a call with no frames has no audio', () => {
    const result = run(createCallDspState({ outputRate: 16000, stereo: true }), [[]]);
    expect(result.pcm.length).toBe(0);
    expect(result.stats.durationSamples).toBe(0);
  });
});
