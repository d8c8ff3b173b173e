export type TrackRole = 'caller' | 'agent';
export type FrameEncoding = 'mulaw' | 'alaw' | 'pcm_s16le';
export type OutputRate = 8000 | 16000 | 24000 | 48000;

/** One chunk of one track's audio, whatever the source (Twilio, LiveKit). */
export interface InputFrame {
  /** e.g. 'inbound' | 'outbound' for Twilio, participant/track sid for LiveKit. */
  trackId: string;
  /** Stereo recordings put caller tracks on the left and agent tracks on the right. */
  role: TrackRole;
  encoding: FrameEncoding;
  /** Input rate of this track (8000, 16000, 24000, 48000, …); fixed for the life of the track. */
  sampleRate: number;
  /** Start of this frame on the call timeline, in samples at `sampleRate` (Twilio: timestampMs * 8). */
  position: number;
  /** mu-law bytes, or little-endian PCM16. */
  data: Uint8Array;
}

export interface CallDspOptions {
  outputRate: OutputRate;
  stereo: boolean;
  /** How far (seconds) a track may trail the most advanced one before it is padded with silence. Default 2. */
  lagAllowanceSeconds?: number;
}

/** Per-track part of the state. Plain data only. */
export interface TrackDspState {
  trackId: string;
  role: TrackRole;
  encoding: FrameEncoding;
  sampleRate: number;
  /** Timeline index (input samples) just past the last sample written (media or silence). */
  cursor: number;
  /**
   * Input before this index is final: output has read it or the lag horizon has passed it. Silence
   * between here and `cursor` (a gap) may still be replaced by a frame that arrives late.
   */
  finalUntil: number;
  /** Timeline index of `pending[0]`; may be negative (the silence before the call the filter reads). */
  pendingStart: number;
  /** Input samples [pendingStart, cursor) that outputs not yet emitted still read. */
  pending: Int16Array;
  /** End (exclusive, input samples) of the furthest frame received: the track's contribution to the duration. */
  mediaEnd: number;
  /**
   * Flat [start, end, start, end, …] runs of the recent timeline that were filled with silence rather
   * than media, so a frame landing there later counts as late rather than as a duplicate.
   */
  silenceRuns: number[];
}

/**
 * Everything a call's DSP carries between batches. PLAIN DATA ONLY (numbers, strings, booleans,
 * arrays, typed arrays, plain objects): it crosses into and out of worker threads by structured clone
 * with every batch. Treat it as opaque outside src/pipeline.
 */
export interface CallDspState {
  formatVersion: 1;
  outputRate: OutputRate;
  stereo: boolean;
  lagAllowanceSeconds: number;
  /** Tracks in order of first appearance, which fixes the (floating-point) mixing order. */
  tracks: TrackDspState[];
  /** Output samples per channel emitted so far. */
  emittedSamples: number;
  finalized: boolean;
}

export interface BatchStats {
  /** Frames of this batch that contributed at least one sample. */
  framesAccepted: number;
  /** Samples (input rate) of this batch dropped because that stretch already held media. */
  duplicateSamplesDropped: number;
  /**
   * Samples (input rate) of this batch dropped because that stretch had already been given up on:
   * silence that is final (output read it, or the lag horizon passed it), or older than
   * lag allowance + 1 s behind the track's end.
   */
  lateSamplesDropped: number;
  /**
   * Silence samples (input rate) inserted in this batch: gaps between frames, lag padding, final padding.
   * Gap silence a late frame replaces in a later batch is not subtracted again.
   */
  gapSamplesFilled: number;
  /** Output samples per channel emitted so far, including this batch (cumulative). */
  emittedSamples: number;
  /** Length of the media timeline so far (end of the furthest frame of any track), in output samples. */
  durationSamples: number;
}

export interface BatchResult {
  state: CallDspState;
  /** Interleaved PCM16LE at the output rate, 1 or 2 channels. */
  pcm: Uint8Array;
  stats: BatchStats;
}
