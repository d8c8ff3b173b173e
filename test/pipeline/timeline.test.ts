import { describe, expect, test } from 'vitest';
import { createCallDspState, processBatch } from '../../dist/pipeline/index.js';
import type { OutputRate } from '../../dist/pipeline/index.js';
import { isCallvaultError } from '../../dist/errors/index.js';
import { generateTone, pcm16FromBytes, splitChannels, toneAmplitude } from '../support/audio.js';
import { chunk, frame, run, seededRandom, shuffle, type TrackSpec } from './frames.js';

const RATE = 8000;
const FRAME = 160; // 20 ms at 8 kHz
/** Sample-exact path: PCM16 at 8 kHz into an 8 kHz recording is the identity. */
const pcmCaller: TrackSpec = { trackId: 'caller', role: 'caller', encoding: 'pcm_s16le', sampleRate: RATE };
const pcmAgent: TrackSpec = { trackId: 'agent', role: 'agent', encoding: 'pcm_s16le', sampleRate: RATE };

/** 1 kHz at 8 kHz with a π/8 phase: no sample is ever zero, so silence is unambiguous. */
function tone(samples: number, startSample = 0): Int16Array {
  return generateTone({ frequency: 1000, sampleRate: RATE, samples, amplitude: 10000, phase: Math.PI / 8, startSample });
}

function withSilence(signal: Int16Array, from: number, to: number): Int16Array {
  const out = signal.slice();
  out.fill(0, from, to);
  return out;
}

function mono(outputRate: OutputRate = 8000, lagAllowanceSeconds?: number) {
  return createCallDspState({ outputRate, stereo: false, ...(lagAllowanceSeconds === undefined ? {} : { lagAllowanceSeconds }) });
}

describe('gaps', () => {
  test.each([
    ['one 20 ms frame', new Set([10])],
    ['three frames (60 ms)', new Set([10, 11, 12])],
    ['one second', new Set(Array.from({ length: 50 }, (_, i) => 10 + i))],
  ])('a missing stretch of %s becomes exactly that much silence', (_label, skip) => {
    const signal = tone(100 * FRAME);
    const frames = chunk(pcmCaller, signal, FRAME, { skip });
    const result = run(mono(), [frames]);
    const gapStart = 10 * FRAME;
    const gapEnd = (10 + skip.size) * FRAME;
    const out = pcm16FromBytes(result.pcm);
    expect(out).toEqual(withSilence(signal, gapStart, gapEnd));
    // Boundaries: the samples either side of the gap are the tone, not silence.
    expect(out[gapStart - 1]).not.toBe(0);
    expect(out[gapEnd]).not.toBe(0);
    expect(out.subarray(gapStart, gapEnd).every((v) => v === 0)).toBe(true);
    expect(result.stats.gapSamplesFilled).toBe(gapEnd - gapStart);
  });

  test('a gap that is not a whole number of frames (7 ms) is placed to the sample', () => {
    const signal = tone(40 * FRAME);
    const gap = 56; // 7 ms
    const frames = [frame(pcmCaller, 0, signal.subarray(0, 1000)), frame(pcmCaller, 1000 + gap, signal.subarray(1000 + gap))];
    const out = pcm16FromBytes(run(mono(), [frames]).pcm);
    expect(out).toEqual(withSilence(signal, 1000, 1000 + gap));
  });

  test.each([16000, 24000, 48000] as OutputRate[])(
    'resampled to %i Hz, a gap gives exactly the output of explicit silence',
    (outputRate) => {
      const mulawCaller: TrackSpec = { ...pcmCaller, encoding: 'mulaw' };
      const signal = tone(100 * FRAME);
      const skip = new Set([20, 21, 22, 40]);
      const withGaps = run(mono(outputRate), [chunk(mulawCaller, signal, FRAME, { skip })]);
      let explicit: Int16Array = signal.slice();
      for (const index of skip) explicit = withSilence(explicit, index * FRAME, (index + 1) * FRAME);
      const contiguous = run(mono(outputRate), [chunk(mulawCaller, explicit, FRAME)]);
      expect(withGaps.pcm).toEqual(contiguous.pcm);
      expect(withGaps.stats.gapSamplesFilled).toBe(4 * FRAME);
    },
  );

  test('a track whose first frame comes late is silent before it', () => {
    const state = createCallDspState({ outputRate: 8000, stereo: true });
    const callerSignal = tone(100 * FRAME);
    const agentSignal = tone(50 * FRAME, 50 * FRAME);
    const frames = [...chunk(pcmCaller, callerSignal, FRAME), ...chunk(pcmAgent, agentSignal, FRAME, { start: 50 * FRAME })];
    const [left, right] = splitChannels(run(state, [frames]).pcm, 2);
    expect(left).toEqual(callerSignal);
    expect(right!.subarray(0, 50 * FRAME).every((v) => v === 0)).toBe(true);
    expect(right!.subarray(50 * FRAME)).toEqual(agentSignal);
  });
});

describe('duplicates, overlaps and order', () => {
  test('duplicate chunks are dropped without shifting audio', () => {
    const signal = tone(50 * FRAME);
    const frames = chunk(pcmCaller, signal, FRAME).flatMap((f, i) => (i % 3 === 0 ? [f, f] : i % 7 === 0 ? [f, f, f] : [f]));
    const duplicates = frames.length - 50;
    const result = run(mono(), [frames]);
    expect(pcm16FromBytes(result.pcm)).toEqual(signal);
    expect(result.stats.duplicateSamplesDropped).toBe(duplicates * FRAME);
    expect(result.stats.lateSamplesDropped).toBe(0);
    expect(result.stats.framesAccepted).toBe(50);
  });

  test('of an overlapping chunk only the overlapping part is dropped and the rest lands in place', () => {
    const signal = tone(4 * FRAME);
    const overlapping = signal.slice(80, 320);
    overlapping.fill(32767, 0, 80); // what it repeats of [80, 160) is junk: it must not be used
    const frames = [frame(pcmCaller, 0, signal.subarray(0, 160)), frame(pcmCaller, 80, overlapping), frame(pcmCaller, 320, signal.subarray(320))];
    const result = run(mono(), [frames]);
    expect(pcm16FromBytes(result.pcm)).toEqual(signal);
    expect(result.stats.duplicateSamplesDropped).toBe(80);
  });

  test('chunks reordered within a batch are placed by position', () => {
    const signal = tone(100 * FRAME);
    const ordered = chunk(pcmCaller, signal, FRAME);
    const shuffled = shuffle(ordered, seededRandom(7));
    expect(shuffled.map((f) => f.position)).not.toEqual(ordered.map((f) => f.position));
    const result = run(mono(), [shuffled]);
    expect(pcm16FromBytes(result.pcm)).toEqual(signal);
    expect(result.stats.gapSamplesFilled).toBe(0);
  });

  test('a chunk delayed into the next batch still lands while its time is not final', () => {
    const signal = tone(100 * FRAME);
    const frames = chunk(pcmCaller, signal, FRAME);
    const delayed = frames[30]!;
    const first = frames.slice(0, 60).filter((f) => f !== delayed);
    const result = run(mono(), [first, [delayed, ...frames.slice(60)]], { clone: true });
    expect(pcm16FromBytes(result.pcm)).toEqual(signal);
    expect(result.stats.lateSamplesDropped).toBe(0);
  });
});

describe('lag allowance', () => {
  test('a track that falls behind is padded up to (most advanced − allowance); its later frames there are late', () => {
    const allowance = 2;
    let state = createCallDspState({ outputRate: 8000, stereo: true, lagAllowanceSeconds: allowance });
    const callerSignal = tone(5 * RATE);
    const agentSignal = tone(5 * RATE);
    // The agent's stream stalls after 0.5 s while the caller reaches 5 s.
    const first = processBatch(state, [...chunk(pcmCaller, callerSignal, FRAME), ...chunk(pcmAgent, agentSignal.subarray(0, RATE / 2), FRAME)], {
      final: false,
    });
    const horizon = (5 - allowance) * RATE;
    expect(first.stats.emittedSamples).toBe(horizon);
    expect(first.stats.gapSamplesFilled).toBe(horizon - RATE / 2);
    const [left1, right1] = splitChannels(first.pcm, 2);
    expect(left1).toEqual(callerSignal.subarray(0, horizon));
    expect(right1!.subarray(0, RATE / 2)).toEqual(agentSignal.subarray(0, RATE / 2));
    expect(right1!.subarray(RATE / 2).every((v) => v === 0)).toBe(true);

    // The stalled audio turns up: what is behind the horizon is late, the rest is kept.
    state = structuredClone(first.state);
    const rest = chunk(pcmAgent, agentSignal.subarray(RATE / 2), FRAME, { start: RATE / 2 });
    const second = processBatch(state, rest, { final: true });
    expect(second.stats.lateSamplesDropped).toBe(horizon - RATE / 2);
    expect(second.stats.duplicateSamplesDropped).toBe(0);
    const [left2, right2] = splitChannels(second.pcm, 2);
    expect(left2).toEqual(callerSignal.subarray(horizon));
    expect(right2).toEqual(agentSignal.subarray(horizon));
    expect(second.stats.durationSamples).toBe(5 * RATE);
  });

  test('output trails the most advanced track by the allowance, so a track first seen in a later batch loses nothing', () => {
    // Twilio: a batch boundary can fall between inbound and outbound messages, so the first 100 ms batch
    // may hold inbound audio only; the outbound track's first message comes with the next one.
    const callerSignal = tone(RATE);
    const agentSignal = generateTone({ frequency: 440, sampleRate: RATE, samples: RATE, amplitude: 8000 });
    const callerFrames = chunk(pcmCaller, callerSignal, FRAME);
    const agentFrames = chunk(pcmAgent, agentSignal, FRAME);
    const batches = Array.from({ length: 10 }, (_, b) => [
      ...callerFrames.slice(5 * b, 5 * b + 5),
      ...(b === 0 ? [] : agentFrames.slice(5 * (b - 1), 5 * b)),
    ]);
    batches[9]!.push(...agentFrames.slice(45));
    expect(batches[0]!.every((f) => f.trackId === 'caller')).toBe(true);
    const state = createCallDspState({ outputRate: 8000, stereo: true, lagAllowanceSeconds: 0.5 });
    const result = run(state, batches, { clone: true });
    // Nothing is emitted until the most advanced track is 0.5 s in; then output trails it by 0.5 s.
    expect(result.batches.map((b) => b.stats.emittedSamples)).toEqual([0, 0, 0, 0, 0, 800, 1600, 2400, 3200, 8000]);
    const [left, right] = splitChannels(result.pcm, 2);
    expect(left).toEqual(callerSignal);
    expect(right).toEqual(agentSignal);
    expect(result.stats.lateSamplesDropped).toBe(0);
  });

  test('a participant joining mid-call is placed at its position', () => {
    const agent48: TrackSpec = { trackId: 'PA_late', role: 'agent', encoding: 'pcm_s16le', sampleRate: 48000 };
    const state = createCallDspState({ outputRate: 16000, stereo: true });
    const callerFrames = chunk(pcmCaller, tone(6 * RATE), FRAME);
    const joinAt = 3; // seconds
    const agentFrames = chunk(agent48, generateTone({ frequency: 1000, sampleRate: 48000, samples: 3 * 48000, amplitude: 8000, startSample: joinAt * 48000 }), 960, {
      start: joinAt * 48000,
    });
    const batches = [callerFrames.slice(0, 160), [...callerFrames.slice(160), ...agentFrames]];
    const [, right] = splitChannels(run(state, batches, { clone: true }).pcm, 2);
    expect(right!.length).toBe(6 * 16000);
    expect(toneAmplitude(right!.subarray(0, 2.9 * 16000), 16000, 1000)).toBeLessThan(1);
    expect(Math.abs(toneAmplitude(right!.subarray(3.1 * 16000, 5.9 * 16000), 16000, 1000) - 8000)).toBeLessThan(10);
  });
});

describe('misuse', () => {
  test.each([
    ['odd-length PCM', { ...frame(pcmCaller, 0, tone(10)), data: new Uint8Array(7) }],
    ['negative position', frame(pcmCaller, -160, tone(10))],
    ['fractional position', frame(pcmCaller, 1.5, tone(10))],
    ['unknown role', { ...frame(pcmCaller, 0, tone(10)), role: 'listener' }],
  ])('a frame with %s is rejected with FRAME_PAYLOAD_INVALID', (_label, bad) => {
    expect(() => processBatch(mono(), [bad as never], { final: false })).toThrow(
      expect.objectContaining({ code: 'FRAME_PAYLOAD_INVALID' }),
    );
  });

  test('a track cannot change its sample rate', () => {
    const first = processBatch(mono(), [frame(pcmCaller, 0, tone(160))], { final: false });
    let error: unknown;
    try {
      processBatch(first.state, [frame({ ...pcmCaller, sampleRate: 16000 }, 320, tone(320))], { final: false });
    } catch (err) {
      error = err;
    }
    expect(isCallvaultError(error, 'FRAME_PAYLOAD_INVALID')).toBe(true);
  });

  test('a rejected batch leaves the state untouched', () => {
    const first = processBatch(mono(), [frame(pcmCaller, 0, tone(160))], { final: false });
    const snapshot = structuredClone(first.state);
    const good = frame(pcmAgent, 0, tone(160));
    expect(() => processBatch(first.state, [good, { ...good, data: new Uint8Array(3) }], { final: false })).toThrow();
    expect(first.state).toEqual(snapshot);
  });

  test('a finalised state refuses further batches with CLOSED', () => {
    const done = processBatch(mono(), [frame(pcmCaller, 0, tone(160))], { final: true });
    expect(() => processBatch(done.state, [], { final: true })).toThrow(expect.objectContaining({ code: 'CLOSED' }));
  });
});
