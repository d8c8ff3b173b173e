/**
 * Reads what MPEG audio (MP3) says about itself from its frame headers, without decoding anything: sample
 * rate, channel count and duration. Recordings that arrive as MP3 are stored as they are; these values only
 * describe them (container header, recording row). Anything that does not parse is "unknown" (0), never an error.
 */

export interface MpegAudioInfo {
  /** Hz from the first frame header; 0 when no frame was found. */
  sampleRate: number;
  /** 1 (mono) or 2 (stereo, joint stereo, dual channel); 0 when no frame was found. */
  channels: 0 | 1 | 2;
  /** Frames walked back to back from the first one (an ID3v1 tag or junk after them ends the walk). */
  frames: number;
  /** frames × samples per frame ÷ sample rate, rounded; 0 when unknown. */
  durationMs: number;
}

interface FrameHeader {
  sampleRate: number;
  channels: 1 | 2;
  samplesPerFrame: number;
  length: number;
}

// Indexed by the header's 2-bit version field: 0 MPEG-2.5, 1 reserved, 2 MPEG-2, 3 MPEG-1.
const SAMPLE_RATES: ReadonlyArray<readonly number[] | null> = [[11025, 12000, 8000], null, [22050, 24000, 16000], [44100, 48000, 32000]];
// kbit/s for bitrate indices 1..14 (0 is "free format", 15 is invalid).
const BITRATES_V1 = {
  1: [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  2: [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  3: [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
} as const;
const BITRATES_V2 = {
  1: [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  2: [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  3: [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
} as const;
/** How far into the audio (after an ID3v2 tag) the first frame is looked for. */
const SYNC_SEARCH_BYTES = 64 * 1024;

function frameAt(bytes: Uint8Array, offset: number): FrameHeader | null {
  if (offset + 4 > bytes.length) return null;
  const b1 = bytes[offset + 1]!;
  const b2 = bytes[offset + 2]!;
  const b3 = bytes[offset + 3]!;
  if (bytes[offset] !== 0xff || (b1 & 0xe0) !== 0xe0) return null;
  const version = (b1 >> 3) & 0x03;
  const layerBits = (b1 >> 1) & 0x03;
  const bitrateIndex = b2 >> 4;
  const rateIndex = (b2 >> 2) & 0x03;
  const rates = SAMPLE_RATES[version];
  if (!rates || layerBits === 0 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return null;
  const layer = (4 - layerBits) as 1 | 2 | 3;
  const sampleRate = rates[rateIndex]!;
  const bitrate = (version === 3 ? BITRATES_V1 : BITRATES_V2)[layer][bitrateIndex - 1]! * 1000;
  const padding = (b2 >> 1) & 0x01;
  const channels = (b3 >> 6) === 3 ? 1 : 2;
  if (layer === 1) return { sampleRate, channels, samplesPerFrame: 384, length: (Math.floor((12 * bitrate) / sampleRate) + padding) * 4 };
  const samplesPerFrame = layer === 3 && version !== 3 ? 576 : 1152;
  return { sampleRate, channels, samplesPerFrame, length: Math.floor((samplesPerFrame / 8) * bitrate / sampleRate) + padding };
}

/** Bytes taken by a leading ID3v2 tag (10-byte header, syncsafe size, optional footer), or 0. */
function id3v2Length(bytes: Uint8Array): number {
  if (bytes.length < 10 || bytes[0] !== 0x49 || bytes[1] !== 0x44 || bytes[2] !== 0x33) return 0;
  const size = ((bytes[6]! & 0x7f) << 21) | ((bytes[7]! & 0x7f) << 14) | ((bytes[8]! & 0x7f) << 7) | (bytes[9]! & 0x7f);
  const footer = (bytes[5]! & 0x10) !== 0 ? 10 : 0;
  return 10 + size + footer;
}

export function describeMpegAudio(bytes: Uint8Array): MpegAudioInfo {
  const unknown: MpegAudioInfo = { sampleRate: 0, channels: 0, frames: 0, durationMs: 0 };
  const start = id3v2Length(bytes);
  const searchEnd = Math.min(bytes.length, start + SYNC_SEARCH_BYTES);
  for (let offset = start; offset < searchEnd; offset++) {
    const first = frameAt(bytes, offset);
    if (!first) continue;
    // A lone 0xFFE… in junk looks like a header; two consecutive frames (or one that fills the data) do not happen by chance.
    const next = offset + first.length;
    if (next !== bytes.length && !frameAt(bytes, next)) continue;
    let frames = 0;
    let position = offset;
    for (let frame = first as FrameHeader | null; frame && position + frame.length <= bytes.length; frame = frameAt(bytes, position)) {
      frames++;
      position += frame.length;
    }
    if (frames === 0) return unknown;
    return {
      sampleRate: first.sampleRate,
      channels: first.channels,
      frames,
      durationMs: Math.round((frames * first.samplesPerFrame * 1000) / first.sampleRate),
    };
  }
  return unknown;
}
