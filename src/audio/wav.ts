/** Canonical 44-byte PCM16 WAV header, and a tolerant reader for tests and tools. */
import { CallvaultError, ErrorCode } from '../errors/index.js';

export const WAV_HEADER_LENGTH = 44;
const BITS_PER_SAMPLE = 16;
/** RIFF sizes are 32-bit; the RIFF size field counts the file minus 8 bytes. */
export const MAX_WAV_DATA_BYTES = 0xffffffff - (WAV_HEADER_LENGTH - 8);

export interface WavFormat {
  sampleRate: number;
  channels: number;
  /** PCM bytes in the data chunk. */
  dataBytes: number;
}

export function wavHeader({ sampleRate, channels, dataBytes }: WavFormat): Uint8Array {
  if (!Number.isInteger(sampleRate) || sampleRate <= 0 || sampleRate > 0xffffffff) {
    throw new CallvaultError(ErrorCode.BadRequest, 'WAV sample rate must be a positive integer', { details: { sampleRate } });
  }
  if (!Number.isInteger(channels) || channels < 1 || channels > 0xffff) {
    throw new CallvaultError(ErrorCode.BadRequest, 'WAV channel count must be a positive integer', { details: { channels } });
  }
  if (!Number.isInteger(dataBytes) || dataBytes < 0 || dataBytes > MAX_WAV_DATA_BYTES) {
    throw new CallvaultError(ErrorCode.BadRequest, 'WAV data size does not fit a RIFF file', { details: { dataBytes } });
  }
  const blockAlign = channels * (BITS_PER_SAMPLE / 8);
  const out = new Uint8Array(WAV_HEADER_LENGTH);
  const view = new DataView(out.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) out[offset + i] = text.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  view.setUint32(4, WAV_HEADER_LENGTH - 8 + dataBytes, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // WAVE_FORMAT_PCM
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, BITS_PER_SAMPLE, true);
  ascii(36, 'data');
  view.setUint32(40, dataBytes, true);
  return out;
}

export interface ParsedWav {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** The data chunk's bytes (a view into the input). */
  data: Uint8Array;
  /** Interleaved samples decoded from `data` when bitsPerSample is 16, otherwise empty. */
  samples: Int16Array;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

function bad(message: string): CallvaultError {
  return new CallvaultError(ErrorCode.BadRequest, `not a readable PCM WAV file: ${message}`);
}

/** Reads a RIFF/WAVE file, skipping chunks other than `fmt ` and `data` (LIST, fact, ...). */
export function parseWav(bytes: Uint8Array): ParsedWav {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset: number) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw bad('missing RIFF/WAVE signature');
  let format: { sampleRate: number; channels: number; bitsPerSample: number } | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const start = offset + 8;
    if (id === 'fmt ') {
      if (size < 16 || start + size > bytes.length) throw bad('fmt chunk is too short');
      const code = view.getUint16(start, true);
      if (code !== WAVE_FORMAT_PCM && code !== WAVE_FORMAT_EXTENSIBLE) throw bad(`format code ${code} is not PCM`);
      format = {
        channels: view.getUint16(start + 2, true),
        sampleRate: view.getUint32(start + 4, true),
        bitsPerSample: view.getUint16(start + 14, true),
      };
    } else if (id === 'data') {
      if (!format) throw bad('data chunk precedes fmt chunk');
      if (start + size > bytes.length) throw bad('data chunk runs past the end of the file');
      const data = bytes.subarray(start, start + size);
      return { ...format, data, samples: format.bitsPerSample === 16 ? int16LittleEndian(data) : new Int16Array(0) };
    }
    // Chunks are padded to an even length.
    offset = start + size + (size % 2);
  }
  throw bad('no data chunk');
}

function int16LittleEndian(data: Uint8Array): Int16Array {
  const count = Math.floor(data.length / 2);
  const out = new Int16Array(count);
  const view = new DataView(data.buffer, data.byteOffset, count * 2);
  for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true);
  return out;
}
