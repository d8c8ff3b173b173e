/**
 * Measuring audio in tests: tone generation, tone energy (Goertzel), RMS, channel splitting.
 * Shared by the pipeline tests and the end-to-end tests, so keep it dependency-free.
 */

export interface ToneOptions {
  frequency: number;
  sampleRate: number;
  /** Number of samples to produce. */
  samples: number;
  /** Peak amplitude in int16 units. Default 10000. */
  amplitude?: number;
  /** Phase (radians) at timeline sample `startSample`. Default 0. */
  phase?: number;
  /**
   * Timeline index of the first sample produced: sample i is the tone at time (startSample + i) / sampleRate,
   * so pieces generated separately join up seamlessly. Default 0.
   */
  startSample?: number;
}

/** A sine tone, rounded to int16 (values are clamped, never wrapped). */
export function generateTone(options: ToneOptions): Int16Array {
  const amplitude = options.amplitude ?? 10000;
  const phase = options.phase ?? 0;
  const start = options.startSample ?? 0;
  const out = new Int16Array(options.samples);
  const step = (2 * Math.PI * options.frequency) / options.sampleRate;
  for (let i = 0; i < options.samples; i++) {
    const value = Math.round(amplitude * Math.sin(step * (start + i) + phase));
    out[i] = Math.max(-32768, Math.min(32767, value));
  }
  return out;
}

type Samples = ArrayLike<number>;

/**
 * |X(f)|² of the plain (rectangular-window) DTFT at exactly `frequency` (need not fall on a DFT bin).
 * For a tone of amplitude A over N samples at exactly that frequency, this is about (A·N/2)².
 */
export function goertzelPower(samples: Samples, sampleRate: number, frequency: number): number {
  const omega = (2 * Math.PI * frequency) / sampleRate;
  const coefficient = 2 * Math.cos(omega);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < samples.length; i++) {
    const s0 = samples[i]! + coefficient * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return s1 * s1 + s2 * s2 - coefficient * s1 * s2;
}

/**
 * Peak amplitude of the component at `frequency`. A Hann window keeps other tones and the segment's
 * edges from leaking in, and the frequency is evaluated exactly, so there is no scalloping loss:
 * accurate to well under 0.01 dB for a clean tone spanning a few hundred cycles.
 */
export function toneAmplitude(samples: Samples, sampleRate: number, frequency: number): number {
  const n = samples.length;
  if (n === 0) return 0;
  const omega = (2 * Math.PI * frequency) / sampleRate;
  let re = 0;
  let im = 0;
  let windowSum = 0;
  for (let i = 0; i < n; i++) {
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * (i + 0.5)) / n);
    windowSum += w;
    const v = samples[i]! * w;
    re += v * Math.cos(omega * i);
    im -= v * Math.sin(omega * i);
  }
  return (2 * Math.hypot(re, im)) / windowSum;
}

export function rms(samples: Samples): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i]! * samples[i]!;
  return Math.sqrt(sum / samples.length);
}

/** Decibels of a ratio of amplitudes. */
export function db(ratio: number): number {
  return 20 * Math.log10(ratio);
}

/** Reads little-endian PCM16 bytes (any byteOffset) as samples. */
export function pcm16FromBytes(bytes: Uint8Array): Int16Array {
  const out = new Int16Array(bytes.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = ((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16) >> 16;
  return out;
}

export function pcm16ToBytes(samples: Int16Array): Uint8Array {
  const out = new Uint8Array(samples.length * 2);
  for (let i = 0; i < samples.length; i++) {
    out[2 * i] = samples[i]! & 0xff;
    out[2 * i + 1] = (samples[i]! >> 8) & 0xff;
  }
  return out;
}

/** De-interleaves PCM16 (bytes in little-endian, or samples) into one array per channel. */
export function splitChannels(pcm: Uint8Array | Int16Array, channels: number): Int16Array[] {
  const samples = pcm instanceof Int16Array ? pcm : pcm16FromBytes(pcm);
  const frames = Math.floor(samples.length / channels);
  const out = Array.from({ length: channels }, () => new Int16Array(frames));
  for (let n = 0; n < frames; n++) {
    for (let c = 0; c < channels; c++) out[c]![n] = samples[n * channels + c]!;
  }
  return out;
}

/** The samples of [fromMs, toMs) of one channel at `sampleRate`. */
export function sliceMs(samples: Int16Array, sampleRate: number, fromMs: number, toMs: number): Int16Array {
  return samples.subarray(Math.round((fromMs * sampleRate) / 1000), Math.round((toMs * sampleRate) / 1000));
}
