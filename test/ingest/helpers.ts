/** Shared fixtures for the Twilio ingest tests: SIDs, frames built by hand, and audio measurements. */
import { expect } from 'vitest';
import { mulaw } from 'alawmulaw';

export const ACCOUNT_SID = 'AC0123456789abcdef0123456789abcdef';
export const OTHER_ACCOUNT_SID = 'ACfedcba9876543210fedcba9876543210';
export const CALL_SID = 'CA11111111111111111111111111111111';
export const STREAM_SID = 'MZ22222222222222222222222222222222';

export const connected = (): string => JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' });

export function start(
  overrides: { tracks?: string[]; accountSid?: string; sequenceNumber?: string | number; customParameters?: unknown } = {},
): string {
  return JSON.stringify({
    event: 'start',
    sequenceNumber: overrides.sequenceNumber ?? '1',
    start: {
      accountSid: overrides.accountSid ?? ACCOUNT_SID,
      streamSid: STREAM_SID,
      callSid: CALL_SID,
      tracks: overrides.tracks ?? ['inbound', 'outbound'],
      customParameters: overrides.customParameters ?? { tenant: 'acme' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    },
    streamSid: STREAM_SID,
  });
}

/** A tone rendered and encoded with the reference codec, independent of the code under test. */
export function toneMulaw(frequencyHz: number, startSample: number, count: number, amplitude = 0.5): Uint8Array {
  const pcm = new Int16Array(count);
  for (let i = 0; i < count; i++) {
    pcm[i] = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * frequencyHz * (startSample + i)) / 8000));
  }
  return mulaw.encode(pcm);
}

export function media(init: {
  seq: number;
  track?: string;
  chunk?: number | string;
  timestampMs?: number | string;
  payload?: string;
  bytes?: number;
}): string {
  const bytes = init.bytes ?? 160;
  return JSON.stringify({
    event: 'media',
    sequenceNumber: String(init.seq),
    media: {
      track: init.track ?? 'inbound',
      chunk: String(init.chunk ?? init.seq),
      timestamp: String(init.timestampMs ?? 0),
      payload: init.payload ?? Buffer.from(toneMulaw(440, 0, bytes)).toString('base64'),
    },
    streamSid: STREAM_SID,
  });
}

export const dtmf = (seq: number, digit = '5'): string =>
  JSON.stringify({ event: 'dtmf', streamSid: STREAM_SID, sequenceNumber: String(seq), dtmf: { track: 'inbound_track', digit } });

export const mark = (seq: number, name = 'greeting-done'): string =>
  JSON.stringify({ event: 'mark', sequenceNumber: String(seq), streamSid: STREAM_SID, mark: { name } });

export const stop = (seq: number, accountSid = ACCOUNT_SID, callSid = CALL_SID): string =>
  JSON.stringify({ event: 'stop', sequenceNumber: String(seq), stop: { accountSid, callSid }, streamSid: STREAM_SID });

export function decodeMulaw(bytes: Uint8Array): Int16Array {
  return mulaw.decode(bytes);
}

/** Frequency of a pure tone from its zero crossings (two per cycle). */
export function toneFrequency(samples: Int16Array, sampleRate = 8000): number {
  let crossings = 0;
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if ((a < 0 && b >= 0) || (a >= 0 && b < 0)) crossings++;
  }
  return crossings / 2 / (samples.length / sampleRate);
}

/** Asserts a pure tone of `hz`; zero crossings resolve it to one crossing over the span measured. */
export function expectTone(audio: Int16Array, hz: number, sampleRate = 8000): void {
  const resolutionHz = 1 / (2 * (audio.length / sampleRate));
  expect(Math.abs(toneFrequency(audio, sampleRate) - hz)).toBeLessThanOrEqual(resolutionHz);
}

export function rms(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.sqrt(sum / samples.length);
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(chunks.map((c) => Buffer.from(c))));
}
