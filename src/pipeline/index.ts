export { createCallDspState, processBatch } from './dsp.js';
export { alawDecode, alawEncode, ALAW_DECODE_TABLE, mulawDecode, mulawDecodeSample, mulawEncode, mulawEncodeSample, MULAW_DECODE_TABLE } from './mulaw.js';
export { designResampler, RESAMPLER_SPEC, type ResamplerDesign } from './resampler.js';
export type {
  BatchResult,
  BatchStats,
  CallDspOptions,
  CallDspState,
  FrameEncoding,
  InputFrame,
  OutputRate,
  TrackDspState,
  TrackRole,
} from './types.js';
