/**
 * G.711 (the 8-bit companding telephony uses): µ-law (`audio/x-mulaw`, PCMU, what Twilio Media Streams send by
 * default) and A-law (`audio/x-alaw`, PCMA). The decode tables are built once per thread, at load time, from the
 * `alawmulaw` reference codec; decoding is then a table lookup (it is a hot path).
 */
// alawmulaw ships CommonJS as `main` (its ESM entry uses extensionless imports Node cannot load).
import alawmulaw from 'alawmulaw';

const BIAS = 0x84;
const CLIP = 32635;

function tableOf(decodeSample: (code: number) => number): Readonly<Int16Array> {
  const table = new Int16Array(256);
  // `| 0`: the reference returns -0 for a negative zero code, which an Int16Array holds as 0 anyway.
  for (let code = 0; code < 256; code++) table[code] = decodeSample(code) | 0;
  return table;
}

/** Decoded value of each of the 256 µ-law codes. */
export const MULAW_DECODE_TABLE: Readonly<Int16Array> = tableOf(alawmulaw.mulaw.decodeSample);
/** Decoded value of each of the 256 A-law codes (even bits inverted on the wire, as G.711 sends them). */
export const ALAW_DECODE_TABLE: Readonly<Int16Array> = tableOf(alawmulaw.alaw.decodeSample);

export function mulawDecodeSample(code: number): number {
  return MULAW_DECODE_TABLE[code & 0xff]!;
}

export function mulawDecode(codes: Uint8Array): Int16Array {
  const out = new Int16Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = MULAW_DECODE_TABLE[codes[i]!]!;
  return out;
}

export function alawDecode(codes: Uint8Array): Int16Array {
  const out = new Int16Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = ALAW_DECODE_TABLE[codes[i]!]!;
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

/** A-law encoding (the simulator's and tests'; the gateway only decodes), by the reference codec. */
export function alawEncode(samples: Int16Array): Uint8Array {
  return alawmulaw.alaw.encode(samples);
}
