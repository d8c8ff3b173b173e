import { describe, expect, test } from 'vitest';
import { createCallDspState } from '../../dist/pipeline/index.js';
import type { InputFrame, OutputRate } from '../../dist/pipeline/index.js';
import { generateTone } from '../support/audio.js';
import { chunk, interleave, run, seededRandom, shuffle, twilioInbound, twilioOutbound, type TrackSpec } from './frames.js';

/**
 * A messy 6 s call: two Twilio tracks with packet loss and duplicates, and a 48 kHz LiveKit participant
 * joining at 1.5 s with 10 ms frames, each batch's frames slightly shuffled.
 */
function messyCall(): InputFrame[] {
  const inbound = chunk(twilioInbound, generateTone({ frequency: 440, sampleRate: 8000, samples: 48000, amplitude: 9000 }), 160, {
    skip: new Set([17, 18, 100, 201]),
  });
  const outbound = chunk(twilioOutbound, generateTone({ frequency: 1000, sampleRate: 8000, samples: 48000, amplitude: 9000 }), 160, {
    skip: new Set([5, 150]),
  });
  const participant: TrackSpec = { trackId: 'PA_joiner', role: 'agent', encoding: 'pcm_s16le', sampleRate: 48000 };
  const joiner = chunk(
    participant,
    generateTone({ frequency: 3000, sampleRate: 48000, samples: 4.5 * 48000, amplitude: 7000, startSample: 1.5 * 48000 }),
    480,
    { start: 1.5 * 48000 },
  );
  const frames = interleave(inbound, outbound, joiner);
  // Retransmissions: some frames arrive twice, a little later.
  const withDuplicates: InputFrame[] = [];
  frames.forEach((f, i) => {
    withDuplicates.push(f);
    if (i % 37 === 0 && i > 3) withDuplicates.push(frames[i - 3]!);
  });
  // Delays: a few frames overtaken by the next 15 (jitter), so they often land in a later batch than their neighbours.
  for (const at of [60, 200, 333, 480]) {
    const [delayed] = withDuplicates.splice(at, 1);
    withDuplicates.splice(at + 15, 0, delayed!);
  }
  return withDuplicates;
}

function splitEvery(frames: InputFrame[], size: number): InputFrame[][] {
  const batches: InputFrame[][] = [];
  for (let i = 0; i < frames.length; i += size) batches.push(frames.slice(i, i + size));
  return batches;
}

function splitRandomly(frames: InputFrame[], seed: number): InputFrame[][] {
  const random = seededRandom(seed);
  const batches: InputFrame[][] = [];
  for (let i = 0; i < frames.length; ) {
    const size = Math.floor(random() * 40);
    batches.push(shuffle(frames.slice(i, i + size), random));
    i += size;
  }
  return batches;
}

describe('batch-split invariance', () => {
  const frames = messyCall();
  // Every frame of a 100 ms Twilio batch is in flight together: roughly 5 inbound + 5 outbound + 10 joiner frames.
  const splits: Array<[string, InputFrame[][]]> = [
    ['~100 ms batches', splitEvery(frames, 20)],
    ['~20 ms batches', splitEvery(frames, 4)],
    ['one frame per batch', splitEvery(frames, 1)],
    ['random splits (seed 1)', splitRandomly(frames, 1)],
    ['random splits, shuffled within batches (seed 2)', splitRandomly(frames, 2)],
    ['empty batches in between', splitEvery(frames, 50).flatMap((b) => [b, []])],
  ];

  test.each([8000, 16000, 48000] as OutputRate[])('at %i Hz every split gives byte-identical PCM, with or without cloning', (rate) => {
    const whole = run(createCallDspState({ outputRate: rate, stereo: true }), [frames]);
    expect(whole.pcm.length).toBe(6 * rate * 4);
    for (const [label, batches] of splits) {
      for (const clone of [false, true]) {
        const split = run(createCallDspState({ outputRate: rate, stereo: true }), batches, { clone });
        expect(split.stats.lateSamplesDropped, label).toBe(0);
        expect(Buffer.from(split.pcm).equals(Buffer.from(whole.pcm)), `${label}, clone=${String(clone)}`).toBe(true);
        expect(split.stats.duplicateSamplesDropped, label).toBe(whole.stats.duplicateSamplesDropped);
      }
    }
  });

  test('the state survives structuredClone as plain data', () => {
    const batches = splitEvery(frames, 20);
    let state = createCallDspState({ outputRate: 16000, stereo: true });
    const before = run(state, batches.slice(0, 30), { final: false }).state;
    const cloned = structuredClone(before);
    expect(cloned).toEqual(before);
    // Nothing in it that structured clone would change (class instances, functions, shared views).
    const json = JSON.stringify(cloned, (_k, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Int16Array) : v));
    expect(JSON.parse(json)).toBeTypeOf('object');
    for (const track of cloned.tracks) expect(track.pending.byteLength).toBe(track.pending.buffer.byteLength);
    state = cloned;
    expect(state.emittedSamples).toBeGreaterThan(0);
  });
});
