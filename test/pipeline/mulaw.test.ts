import { describe, expect, test } from 'vitest';
// alawmulaw ships CommonJS as `main` (its ESM entry uses extensionless imports Node cannot load).
import alawmulaw from 'alawmulaw';
import {
  ALAW_DECODE_TABLE,
  alawDecode,
  alawEncode,
  MULAW_DECODE_TABLE,
  mulawDecode,
  mulawDecodeSample,
  mulawEncode,
  mulawEncodeSample,
} from '../../dist/pipeline/index.js';

const reference = alawmulaw.mulaw;

describe('G.711 mu-law', () => {
  test('the decode table matches the reference decoder for all 256 codes', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    // `| 0`: the reference returns -0 for code 0x7f, which an Int16Array cannot hold.
    const expected = Array.from(codes, (code) => reference.decodeSample(code) | 0);
    expect(Array.from(MULAW_DECODE_TABLE)).toEqual(expected);
    expect(Array.from(codes, (code) => mulawDecodeSample(code))).toEqual(expected);
    expect(Array.from(mulawDecode(codes))).toEqual(Array.from(reference.decode(codes)));
    // Known anchors of the standard: 0xff/0x7f are the two zeros, 0x00/0x80 the extremes.
    expect([MULAW_DECODE_TABLE[0xff], MULAW_DECODE_TABLE[0x7f], MULAW_DECODE_TABLE[0x00], MULAW_DECODE_TABLE[0x80]]).toEqual([
      0, 0, -32124, 32124,
    ]);
  });

  test('the encoder matches the reference encoder for every int16 value', () => {
    const all = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
    const ours = mulawEncode(all);
    const theirs = reference.encode(all);
    let mismatches = 0;
    for (let i = 0; i < all.length; i++) {
      if (ours[i] !== theirs[i]) mismatches++;
      if (mulawEncodeSample(all[i]!) !== (reference.encodeSample(all[i]!) & 0xff)) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  test('decode(encode(x)) stays within the quantisation step of its segment', () => {
    for (let x = -32768; x <= 32767; x += 7) {
      const decoded = mulawDecodeSample(mulawEncodeSample(x));
      const magnitude = Math.min(Math.abs(x), 32635);
      // Segment step is 2^(exponent+3); the rounding error is at most one step.
      const step = 2 ** (Math.max(0, Math.floor(Math.log2((magnitude + 0x84) >> 7))) + 3);
      expect(Math.abs(decoded - Math.max(-32635, Math.min(32635, x)))).toBeLessThanOrEqual(step);
    }
  });
});

describe('G.711 A-law', () => {
  test('the decode table is the reference decoder for all 256 codes', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(Array.from(ALAW_DECODE_TABLE)).toEqual(Array.from(codes, (code) => alawmulaw.alaw.decodeSample(code) | 0));
    expect(Array.from(alawDecode(codes))).toEqual(Array.from(alawmulaw.alaw.decode(codes)));
    // Anchors of G.711 A-law (even bits inverted on the wire): 0xd5 / 0x55 are the smallest steps, 0xaa / 0x2a the extremes.
    expect([ALAW_DECODE_TABLE[0xd5], ALAW_DECODE_TABLE[0x55], ALAW_DECODE_TABLE[0xaa], ALAW_DECODE_TABLE[0x2a]]).toEqual([8, -8, 32256, -32256]);
  });

  test('A-law is not µ-law: the same bytes decode differently', () => {
    let differing = 0;
    for (let code = 0; code < 256; code++) if (ALAW_DECODE_TABLE[code] !== MULAW_DECODE_TABLE[code]) differing++;
    expect(differing).toBeGreaterThan(250);
  });

  test('decode(encode(x)) stays within A-law quantisation', () => {
    const all = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
    const back = alawDecode(alawEncode(all));
    for (let i = 0; i < all.length; i += 7) {
      const x = all[i]!;
      // 13-bit A-law: step 16 in the first two segments, doubling per segment up to 1024 at full scale.
      const step = Math.max(16, 2 ** (Math.floor(Math.log2(Math.max(1, Math.abs(x)))) - 3));
      expect(Math.abs(back[i]! - x)).toBeLessThanOrEqual(step);
    }
  });
});
