import { describe, expect, test } from 'vitest';
import type { InputFrame } from '../../src/pipeline/index.js';
import { PAUSE_SILENCE_TRACK, RecordingTimeline } from '../../src/gateway/timeline.js';

const AT = '2026-12-02T00:00:00.000Z';

/** A PCM16 frame at 8 kHz whose samples hold their own position on the call timeline (mod 32768). */
function frame(position: number, samples: number, trackId = 'inbound'): InputFrame {
  const data = new Uint8Array(samples * 2);
  const view = new DataView(data.buffer);
  for (let i = 0; i < samples; i++) view.setInt16(i * 2, (position + i) % 32768, true);
  return { trackId, role: 'caller', encoding: 'pcm_s16le', sampleRate: 8000, position, data };
}

/** [recording position, first call-timeline sample it carries, samples] of each placed piece. */
function pieces(frames: InputFrame[]): Array<[number, number, number]> {
  return frames.map((f) => [f.position, new DataView(f.data.buffer, f.data.byteOffset).getInt16(0, true), f.data.byteLength / 2]);
}

describe('RecordingTimeline', () => {
  test('without an origin or pauses a frame passes unchanged', () => {
    const timeline = new RecordingTimeline();
    const input = frame(160, 160);
    expect(timeline.place(input)).toEqual([input]);
  });

  test('audio before the origin is cut and the rest starts at 0', () => {
    const timeline = new RecordingTimeline(100); // 800 samples at 8 kHz
    expect(pieces(timeline.place(frame(700, 160)))).toEqual([[0, 800, 60]]);
    expect(timeline.place(frame(0, 160))).toEqual([]);
  });

  test.each([
    // behaviour, after-pause frame position on the recording timeline
    ['skip', 1600 - 800] as const,
    ['silence', 1600] as const,
  ])('a %s pause cuts its span by position and shifts later audio accordingly', (behavior, afterPosition) => {
    const timeline = new RecordingTimeline();
    timeline.pause(behavior, 100, AT); // sample 800
    // A frame of the lagging track from before the pause, arriving during it, is kept up to the pause.
    expect(pieces(timeline.place(frame(700, 160)))).toEqual([[700, 700, 100]]);
    timeline.resume(200, AT); // sample 1600
    // Paused audio arriving after the resume is still dropped: it lies inside the pause.
    expect(timeline.place(frame(1000, 160))).toEqual([]);
    expect(pieces(timeline.place(frame(1600, 160)))).toEqual([[afterPosition, 1600, 160]]);
  });

  test('a call ending in a silence pause gets exactly the paused span of silence', () => {
    const timeline = new RecordingTimeline();
    timeline.pause('silence', 1000, AT);
    const ended = timeline.closeOpenPause(2500, AT);
    expect(ended?.pause.toMediaMs).toBe(2500);
    expect(ended?.silence).toMatchObject({ trackId: PAUSE_SILENCE_TRACK, sampleRate: 8000, position: 8000 });
    expect(ended!.silence!.data.byteLength / 2).toBe(12000);
    expect(ended!.silence!.data.every((b) => b === 0)).toBe(true);
    expect(timeline.paused).toBe(false);
  });

  test('a call ending in a skip pause adds nothing', () => {
    const timeline = new RecordingTimeline();
    timeline.pause('skip', 1000, AT);
    expect(timeline.closeOpenPause(2500, AT)?.silence).toBeNull();
    expect(new RecordingTimeline().closeOpenPause(1, AT)).toBeNull();
  });

  test('a lost batch becomes one gap per track with its exact span', () => {
    const timeline = new RecordingTimeline();
    const gaps = timeline.addGaps([frame(800, 160, 'inbound'), frame(960, 160, 'inbound'), frame(400, 160, 'outbound')], 'PIPELINE_FAILED');
    expect(gaps).toEqual([
      { track: 'inbound', fromMs: 100, toMs: 140, reason: 'PIPELINE_FAILED' },
      { track: 'outbound', fromMs: 50, toMs: 70, reason: 'PIPELINE_FAILED' },
    ]);
    expect(timeline.gaps).toEqual(gaps);
  });
});
