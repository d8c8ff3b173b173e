/** Shared helpers for the crypto tests: deterministic audio and byte sources. */
import { createHash } from 'node:crypto';

/** Deterministic bytes from a label, so tables and vectors are stable across runs. */
export function bytesFrom(label: string, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let block = 0, at = 0; at < length; block++) {
    const digest = createHash('sha256').update(`${label}#${block}`).digest();
    out.set(digest.subarray(0, Math.min(digest.length, length - at)), at);
    at += digest.length;
  }
  return out;
}

export { seededRandom as prng } from '../support/random.js';

/** Interleaved PCM16 little-endian: one sine per channel at the given frequencies. */
export function tonePcm(sampleRate: number, frequencies: number[], frames: number, amplitude = 12000): Uint8Array {
  const channels = frequencies.length;
  const out = new Uint8Array(frames * channels * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < frames; i++) {
    frequencies.forEach((f, c) => {
      view.setInt16((i * channels + c) * 2, Math.round(amplitude * Math.sin((2 * Math.PI * f * i) / sampleRate)), true);
    });
  }
  return out;
}

/** Power of one frequency in a channel (Goertzel), normalised to the signal's total power. */
export function toneShare(samples: Int16Array, channels: number, channel: number, sampleRate: number, frequency: number): number {
  const coeff = 2 * Math.cos((2 * Math.PI * frequency) / sampleRate);
  let s1 = 0;
  let s2 = 0;
  let energy = 0;
  let n = 0;
  for (let i = channel; i < samples.length; i += channels) {
    const x = samples[i]!;
    const s0 = x + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
    energy += x * x;
    n++;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  // A pure tone concentrates n/2 of its energy into the bin: power ≈ n * energy / 2.
  return energy === 0 ? 0 : power / ((n * energy) / 2);
}

export async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.slice(at, at + size);
}

export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of stream) parts.push(p);
  return concat(...parts);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function flipBit(bytes: Uint8Array, offset: number, bit = 0): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[offset] = copy[offset]! ^ (1 << bit);
  return copy;
}

/** Resolves with the thrown error's `code`, or 'NO_ERROR'. */
export async function errorCode(run: () => Promise<unknown> | unknown): Promise<string> {
  try {
    await run();
    return 'NO_ERROR';
  } catch (err) {
    return (err as { code?: string }).code ?? `UNCODED: ${String(err)}`;
  }
}
