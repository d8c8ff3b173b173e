/**
 * The per-call DSP core: decode, place each track on the call timeline, resample, mix.
 * Pure and deterministic; no I/O. It runs inside worker threads, each holding the state of the calls pinned to it.
 *
 * Timeline model. Every track's input is one contiguous run of samples from position 0 of the call;
 * anything not covered by a frame is silence. A track's `cursor` is just past the last sample written,
 * and `finalUntil` is where its input stops being final. A frame reaching back behind the cursor
 * contributes its part beyond the cursor, plus any part that lands on not-yet-final gap silence (a frame
 * delayed into a later batch); over media it is a duplicate, over final silence it is late.
 *
 * Emission horizon. Output is emitted up to H = (most advanced track position) − lagAllowance and
 * never further; any track behind H is padded with silence up to H first, and input before H is final.
 * Holding back by the allowance even when every known track is present is deliberate: a track the DSP
 * has not seen yet (Twilio's outbound track whose first message falls into the next batch, a LiveKit
 * participant who joins) or a frame delayed into a later batch can still arrive for time that is not yet
 * emitted instead of being cut. The allowance is therefore both the output latency and the most a
 * track may lag before its audio is given up on.
 *
 * Determinism guarantee. Output sample n depends only on the input samples of each track it reads,
 * summed in a fixed order (tracks in order of first appearance, taps in table order), and those samples
 * are final before n is emitted. Hence: as long as no frame arrives for a time more than
 * `lagAllowanceSeconds` behind the most advanced track position reached in earlier batches (so nothing
 * is dropped as late), and frames that overlap agree on the samples they share (retransmissions),
 * processing a call in one batch or split into batches in any way yields byte-identical PCM, including
 * when the state is structured-cloned between batches or rebuilt by replaying a journal in other batches.
 */
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { ALAW_DECODE_TABLE, MULAW_DECODE_TABLE } from './mulaw.js';
import {
  designResampler,
  firstInputFor,
  lastInputFor,
  outputsComputable,
  resampleAccumulate,
  type ResamplerDesign,
} from './resampler.js';
import type {
  BatchResult,
  BatchStats,
  CallDspOptions,
  CallDspState,
  FrameEncoding,
  InputFrame,
  TrackDspState,
  TrackRole,
} from './types.js';

const OUTPUT_RATES: readonly number[] = [8000, 16000, 24000, 48000];
const ROLES: readonly string[] = ['caller', 'agent'] satisfies TrackRole[];
const ENCODINGS: readonly string[] = ['mulaw', 'alaw', 'pcm_s16le'] satisfies FrameEncoding[];
const MIN_INPUT_RATE = 1000;
const MAX_INPUT_RATE = 384_000;
const DEFAULT_LAG_ALLOWANCE_SECONDS = 2;
/** Beyond the lag allowance, how long silence runs are remembered to tell late frames from duplicates. */
const SILENCE_MEMORY_SECONDS = 1;

export function createCallDspState(options: CallDspOptions): CallDspState {
  const lagAllowanceSeconds = options.lagAllowanceSeconds ?? DEFAULT_LAG_ALLOWANCE_SECONDS;
  if (!OUTPUT_RATES.includes(options.outputRate)) {
    throw new CallvaultError(ErrorCode.PipelineFailed, `unsupported output rate ${String(options.outputRate)}`, {
      details: { outputRate: options.outputRate, supported: OUTPUT_RATES },
    });
  }
  if (typeof options.stereo !== 'boolean') {
    throw new CallvaultError(ErrorCode.PipelineFailed, 'stereo must be a boolean');
  }
  if (!Number.isFinite(lagAllowanceSeconds) || lagAllowanceSeconds < 0 || lagAllowanceSeconds > 3600) {
    throw new CallvaultError(ErrorCode.PipelineFailed, 'lagAllowanceSeconds must be between 0 and 3600', {
      details: { lagAllowanceSeconds },
    });
  }
  return {
    formatVersion: 1,
    outputRate: options.outputRate,
    stereo: options.stereo,
    lagAllowanceSeconds,
    tracks: [],
    emittedSamples: 0,
    finalized: false,
  };
}

/** Exact floor(a / b) for non-negative safe integers, immune to the rounding of the float quotient. */
function floorDiv(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) q -= 1;
  else if ((q + 1) * b <= a) q += 1;
  return q;
}

function ceilDiv(a: number, b: number): number {
  const q = floorDiv(a, b);
  return q * b === a ? q : q + 1;
}

function allowanceSamples(state: CallDspState, rate: number): number {
  return Math.round(state.lagAllowanceSeconds * rate);
}

interface TimelinePoint {
  samples: number;
  rate: number;
}

/** The furthest of the points, compared exactly (a/ra vs b/rb as a·rb vs b·ra). */
function furthest(points: Iterable<TimelinePoint>): TimelinePoint | null {
  let best: TimelinePoint | null = null;
  for (const point of points) {
    if (best === null || point.samples * best.rate > best.samples * point.rate) best = point;
  }
  return best;
}

/** H expressed at `rate`: where a track of that rate is padded to and how far output may read it. */
function horizonAt(state: CallDspState, mostAdvanced: TimelinePoint | null, rate: number): number {
  if (mostAdvanced === null) return 0;
  return Math.max(0, floorDiv(mostAdvanced.samples * rate, mostAdvanced.rate) - allowanceSamples(state, rate));
}

function fail(code: ErrorCode, message: string, details: Record<string, unknown>): never {
  throw new CallvaultError(code, message, { details });
}

function frameSampleCount(frame: InputFrame): number {
  return frame.encoding === 'pcm_s16le' ? frame.data.length >> 1 : frame.data.length;
}

function validateFrame(frame: InputFrame): void {
  const details = { trackId: frame?.trackId, position: frame?.position };
  if (frame === null || typeof frame !== 'object') fail(ErrorCode.FramePayloadInvalid, 'frame is not an object', {});
  if (typeof frame.trackId !== 'string' || frame.trackId.length === 0) {
    fail(ErrorCode.FramePayloadInvalid, 'frame has no trackId', details);
  }
  if (!ROLES.includes(frame.role)) fail(ErrorCode.FramePayloadInvalid, 'frame role must be caller or agent', details);
  if (!ENCODINGS.includes(frame.encoding)) {
    fail(ErrorCode.FramePayloadInvalid, 'frame encoding must be mulaw, alaw or pcm_s16le', details);
  }
  if (!Number.isInteger(frame.sampleRate) || frame.sampleRate < MIN_INPUT_RATE || frame.sampleRate > MAX_INPUT_RATE) {
    fail(ErrorCode.FramePayloadInvalid, 'frame sample rate is out of range', { ...details, sampleRate: frame.sampleRate });
  }
  if (!Number.isSafeInteger(frame.position) || frame.position < 0) {
    fail(ErrorCode.FramePayloadInvalid, 'frame position must be a non-negative integer', details);
  }
  if (!(frame.data instanceof Uint8Array)) fail(ErrorCode.FramePayloadInvalid, 'frame data must be bytes', details);
  if (frame.encoding === 'pcm_s16le' && frame.data.length % 2 !== 0) {
    fail(ErrorCode.FramePayloadInvalid, 'PCM16 frame has an odd number of bytes', { ...details, bytes: frame.data.length });
  }
}

/** A track while a batch is being applied: what gets appended after `pending`, as media or silence lengths. */
interface TrackWork {
  track: TrackDspState;
  design: ResamplerDesign;
  frames: InputFrame[];
  appended: Array<Int16Array | number>;
}

function appendSilence(work: TrackWork, length: number): void {
  if (length <= 0) return;
  const { track } = work;
  const runs = track.silenceRuns;
  if (runs.length > 0 && runs[runs.length - 1] === track.cursor) runs[runs.length - 1] = track.cursor + length;
  else runs.push(track.cursor, track.cursor + length);
  work.appended.push(length);
  track.cursor += length;
}

function decodeRange(frame: InputFrame, from: number, count: number): Int16Array {
  const out = new Int16Array(count);
  const bytes = frame.data;
  if (frame.encoding === 'mulaw' || frame.encoding === 'alaw') {
    const table = frame.encoding === 'mulaw' ? MULAW_DECODE_TABLE : ALAW_DECODE_TABLE;
    for (let i = 0; i < count; i++) out[i] = table[bytes[from + i]!]!;
  } else {
    // Byte-wise so that odd byteOffsets (Buffer pool slices) and big-endian hosts both work.
    for (let i = 0, byte = from * 2; i < count; i++, byte += 2) out[i] = ((bytes[byte]! | (bytes[byte + 1]! << 8)) << 16) >> 16;
  }
  return out;
}

function removeFromRuns(runs: number[], from: number, to: number): number[] {
  const kept: number[] = [];
  for (let i = 0; i < runs.length; i += 2) {
    const start = runs[i]!;
    const end = runs[i + 1]!;
    if (end <= from || start >= to) kept.push(start, end);
    else {
      if (start < from) kept.push(start, from);
      if (end > to) kept.push(to, end);
    }
  }
  return kept;
}

/**
 * Handles the part [from, to) of a frame that lies behind the track's cursor. Where that stretch was
 * filled with silence and is not final yet (output has not read it, the lag horizon has not passed
 * it), the frame's samples replace the silence: a frame delayed into a later batch still lands. Over
 * media it is a duplicate; over final silence, or older than the remembered runs, it is late.
 * Returns how many samples were placed.
 */
function settleOverlap(state: CallDspState, work: TrackWork, frame: InputFrame, from: number, to: number, stats: BatchStats): number {
  const { track } = work;
  const memoryStart = track.cursor - allowanceSamples(state, track.sampleRate) - SILENCE_MEMORY_SECONDS * track.sampleRate;
  let late = Math.max(0, Math.min(to, memoryStart) - from);
  let silence = 0;
  const fills: Array<[number, number]> = [];
  const start = Math.max(from, memoryStart);
  const runs = track.silenceRuns;
  for (let i = 0; i < runs.length; i += 2) {
    const a = Math.max(start, runs[i]!);
    const b = Math.min(to, runs[i + 1]!);
    if (b <= a) continue;
    silence += b - a;
    const fillFrom = Math.max(a, track.finalUntil);
    if (fillFrom < b) fills.push([fillFrom, b]);
  }
  let placed = 0;
  if (fills.length > 0) {
    // Silence from this batch is not in `pending` yet; sorted frames never reach back into it, but be exact anyway.
    materialise(work);
    for (const [a, b] of fills) {
      track.pending.set(decodeRange(frame, a - frame.position, b - a), a - track.pendingStart);
      track.silenceRuns = removeFromRuns(track.silenceRuns, a, b);
      placed += b - a;
    }
  }
  late += silence - placed;
  stats.lateSamplesDropped += late;
  stats.duplicateSamplesDropped += to - from - late - placed;
  return placed;
}

function applyFrames(state: CallDspState, work: TrackWork, stats: BatchStats): void {
  const { track } = work;
  // Stable sort: equal positions keep arrival order, so the first copy of a duplicate wins.
  const ordered = work.frames.map((frame, index) => ({ frame, index }));
  ordered.sort((a, b) => a.frame.position - b.frame.position || a.index - b.index);
  for (const { frame } of ordered) {
    const length = frameSampleCount(frame);
    if (length === 0) continue;
    const start = frame.position;
    const end = start + length;
    if (end > track.mediaEnd) track.mediaEnd = end;
    let skip = 0;
    if (start < track.cursor) {
      const overlapEnd = Math.min(end, track.cursor);
      const placed = settleOverlap(state, work, frame, start, overlapEnd, stats);
      skip = overlapEnd - start;
      if (skip === length) {
        if (placed > 0) stats.framesAccepted += 1;
        continue;
      }
    } else if (start > track.cursor) {
      stats.gapSamplesFilled += start - track.cursor;
      appendSilence(work, start - track.cursor);
    }
    work.appended.push(decodeRange(frame, skip, length - skip));
    track.cursor = end;
    stats.framesAccepted += 1;
  }
}

function createTrack(state: CallDspState, frame: InputFrame, horizonBefore: TimelinePoint | null): TrackWork {
  const design = designResampler(frame.sampleRate, state.outputRate);
  const emitted = state.emittedSamples;
  // Input already read by emitted output, and input behind the lag horizon, is final silence for a newcomer too.
  const alreadyFinal = Math.max(emitted > 0 ? lastInputFor(design, emitted - 1) + 1 : 0, horizonAt(state, horizonBefore, frame.sampleRate));
  const pendingStart = Math.min(firstInputFor(design, emitted), alreadyFinal);
  const track: TrackDspState = {
    trackId: frame.trackId,
    role: frame.role,
    encoding: frame.encoding,
    sampleRate: frame.sampleRate,
    cursor: alreadyFinal,
    finalUntil: alreadyFinal,
    pendingStart,
    pending: new Int16Array(alreadyFinal - pendingStart),
    mediaEnd: 0,
    silenceRuns: alreadyFinal > 0 ? [0, alreadyFinal] : [],
  };
  state.tracks.push(track);
  return { track, design, frames: [], appended: [] };
}

function materialise(work: TrackWork): void {
  const { track } = work;
  if (work.appended.length === 0) return;
  const merged = new Int16Array(track.cursor - track.pendingStart);
  merged.set(track.pending, 0);
  let offset = track.pending.length;
  for (const piece of work.appended) {
    if (typeof piece === 'number') offset += piece;
    else {
      merged.set(piece, offset);
      offset += piece.length;
    }
  }
  track.pending = merged;
  work.appended = [];
}

function assertUsableState(state: CallDspState): void {
  if (state === null || typeof state !== 'object' || state.formatVersion !== 1 || !Array.isArray(state.tracks)) {
    throw new CallvaultError(ErrorCode.PipelineFailed, 'not a CallDspState (or from an incompatible version)');
  }
  if (state.finalized) throw new CallvaultError(ErrorCode.Closed, 'the call DSP has already been finalised');
}

function writePcm(channels: Float64Array[], count: number): Uint8Array {
  const channelCount = channels.length;
  const pcm = new Uint8Array(count * channelCount * 2);
  let byte = 0;
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < channelCount; c++) {
      let value = Math.round(channels[c]![n]!);
      // Saturate: a wrapped int16 turns a loud peak into a full-scale click of the opposite sign.
      if (value > 32767) value = 32767;
      else if (value < -32768) value = -32768;
      pcm[byte++] = value & 0xff;
      pcm[byte++] = (value >> 8) & 0xff;
    }
  }
  return pcm;
}

/**
 * Applies one batch of frames and emits the output that became final. Takes ownership of `state`
 * (it is updated in place and returned; pass the returned state to the next call). With
 * `final: true`, every track is padded with silence to the end of the media timeline and all output is
 * flushed; the state then refuses further batches. See the module comment for the determinism guarantee.
 */
export function processBatch(state: CallDspState, frames: readonly InputFrame[], options: { final: boolean }): BatchResult {
  assertUsableState(state);
  const stats: BatchStats = {
    framesAccepted: 0,
    duplicateSamplesDropped: 0,
    lateSamplesDropped: 0,
    gapSamplesFilled: 0,
    emittedSamples: state.emittedSamples,
    durationSamples: 0,
  };
  const horizonBefore = furthest(state.tracks.map((t) => ({ samples: t.cursor, rate: t.sampleRate })));
  const works = new Map<string, TrackWork>();
  for (const track of state.tracks) {
    works.set(track.trackId, { track, design: designResampler(track.sampleRate, state.outputRate), frames: [], appended: [] });
  }
  // Validate everything before touching the state, so a rejected batch leaves it as it was.
  const specs = new Map<string, { role: TrackRole; encoding: FrameEncoding; sampleRate: number }>(
    state.tracks.map((t) => [t.trackId, t]),
  );
  for (const frame of frames) {
    validateFrame(frame);
    const spec = specs.get(frame.trackId);
    if (spec === undefined) specs.set(frame.trackId, frame);
    else if (spec.role !== frame.role || spec.encoding !== frame.encoding || spec.sampleRate !== frame.sampleRate) {
      fail(ErrorCode.FramePayloadInvalid, 'a track cannot change its role, encoding or sample rate', {
        trackId: frame.trackId,
        expected: { role: spec.role, encoding: spec.encoding, sampleRate: spec.sampleRate },
        got: { role: frame.role, encoding: frame.encoding, sampleRate: frame.sampleRate },
      });
    }
  }
  for (const frame of frames) {
    let work = works.get(frame.trackId);
    if (work === undefined) {
      work = createTrack(state, frame, horizonBefore);
      stats.gapSamplesFilled += work.track.cursor;
      works.set(frame.trackId, work);
    }
    work.frames.push(frame);
  }
  for (const work of works.values()) applyFrames(state, work, stats);

  const mediaEnd = furthest(state.tracks.map((t) => ({ samples: t.mediaEnd, rate: t.sampleRate })));
  const durationSamples = mediaEnd === null ? 0 : ceilDiv(mediaEnd.samples * state.outputRate, mediaEnd.rate);
  let emitEnd = Number.POSITIVE_INFINITY;
  if (options.final) {
    for (const work of works.values()) {
      const { track, design } = work;
      const timelineEnd = mediaEnd === null ? 0 : ceilDiv(mediaEnd.samples * track.sampleRate, mediaEnd.rate);
      if (timelineEnd > track.cursor) {
        stats.gapSamplesFilled += timelineEnd - track.cursor;
        appendSilence(work, timelineEnd - track.cursor);
      }
      // The filter reads a little past the last output sample; that tail is silence, not part of the timeline.
      const filterTailEnd = durationSamples > 0 ? lastInputFor(design, durationSamples - 1) + 1 : 0;
      if (filterTailEnd > track.cursor) appendSilence(work, filterTailEnd - track.cursor);
    }
    emitEnd = durationSamples;
  } else {
    const mostAdvanced = furthest(state.tracks.map((t) => ({ samples: t.cursor, rate: t.sampleRate })));
    for (const work of works.values()) {
      const { track, design } = work;
      const horizon = horizonAt(state, mostAdvanced, track.sampleRate);
      if (horizon > track.cursor) {
        stats.gapSamplesFilled += horizon - track.cursor;
        appendSilence(work, horizon - track.cursor);
      }
      if (horizon > track.finalUntil) track.finalUntil = horizon;
      emitEnd = Math.min(emitEnd, outputsComputable(design, horizon));
    }
  }
  if (!Number.isFinite(emitEnd)) emitEnd = state.emittedSamples;
  emitEnd = Math.max(emitEnd, state.emittedSamples);

  const emitStart = state.emittedSamples;
  const count = emitEnd - emitStart;
  const channels = Array.from({ length: state.stereo ? 2 : 1 }, () => new Float64Array(count));
  for (const work of works.values()) {
    materialise(work);
    const { track, design } = work;
    if (count > 0) {
      const channel = state.stereo && track.role === 'agent' ? channels[1]! : channels[0]!;
      resampleAccumulate(design, track.pending, track.pendingStart, emitStart, count, channel);
    }
    const keepFrom = Math.min(firstInputFor(design, emitEnd), track.cursor);
    if (keepFrom > track.pendingStart) {
      track.pending = track.pending.slice(keepFrom - track.pendingStart);
      track.pendingStart = keepFrom;
    }
    forgetOldSilence(state, track);
  }
  state.emittedSamples = emitEnd;
  if (options.final) state.finalized = true;
  stats.emittedSamples = emitEnd;
  stats.durationSamples = durationSamples;
  return { state, pcm: writePcm(channels, count), stats };
}

function forgetOldSilence(state: CallDspState, track: TrackDspState): void {
  const memoryStart = track.cursor - allowanceSamples(state, track.sampleRate) - SILENCE_MEMORY_SECONDS * track.sampleRate;
  const runs = track.silenceRuns;
  let drop = 0;
  while (drop < runs.length && runs[drop + 1]! <= memoryStart) drop += 2;
  if (drop > 0) track.silenceRuns = runs.slice(drop);
}

