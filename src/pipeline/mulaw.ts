/**
 * G.711 µ-law (the 8-bit companding Twilio Media Streams use), bit-exact with the reference
 * implementation (bias 0x84, clip 32635, codes stored inverted).
 */

const BIAS = 0x84;
const CLIP = 32635;

function decodeCode(code: number): number {
  const inverted = ~code & 0xff;
  const exponent = (inverted >> 4) & 0x07;
  const mantissa = inverted & 0x0f;
  const magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
  return inverted & 0x80 ? -magnitude : magnitude;
}

/** Decoded value of each of the 256 codes; built once per thread because decoding is a hot path. */
export const MULAW_DECODE_TABLE: Readonly<Int16Array> = (() => {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) table[code] = decodeCode(code);
  return table;
})();

export function mulawDecodeSample(code: number): number {
  return MULAW_DECODE_TABLE[code & 0xff]!;
}

export function mulawDecode(codes: Uint8Array): Int16Array {
  const out = new Int16Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = MULAW_DECODE_TABLE[codes[i]!]!;
  return out;
}

/** Encodes one linear PCM16 sample (values outside int16 are clipped like any loud sample). */
export function mulawEncodeSample(sample: number): number {
  const negative = sample < 0;
  let magnitude = negative ? -sample : sample;
  magnitude += BIAS;
  if (magnitude > CLIP) magnitude = CLIP;
  // magnitude >= BIAS, so magnitude >> 7 >= 1 and its top set bit is the segment (0..7).
  const exponent = 31 - Math.clz32(magnitude >> 7);
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f;
  return ~((negative ? 0x80 : 0) | (exponent << 4) | mantissa) & 0xff;
}

export function mulawEncode(samples: Int16Array): Uint8Array {
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = mulawEncodeSample(samples[i]!);
  return out;
}
