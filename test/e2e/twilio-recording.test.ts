/**
 * End to end: the simulator places Twilio calls into a real gateway (uWS, worker threads, PostgreSQL,
 * MinIO); each test reads the object back from MinIO, decrypts it with the documented format and checks
 * the audio itself.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { simulateTwilioCall, randomCallSid } from '../../dist/ingest/twilio/simulator.js';
import { loadEnv } from '../../dist/config/index.js';
import { sliceMs, toneAmplitude, rms } from '../support/audio.js';
import { s3Client } from '../support/peers.js';
import { placeCall } from '../support/twilio.js';
import {
  PUBLIC_URL,
  fetchRecording,
  listBucket,
  recordingsOfCall,
  startTestGateway,
  type TestGateway,
} from '../support/gateway.js';

const CALLER_HZ = 440;
const AGENT_HZ = 1000;

let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway();
});

afterAll(async () => {
  await t?.dispose();
});

function acme() {
  return t.accounts[0]!;
}

function call(options: Parameters<typeof placeCall>[1] = {}) {
  return placeCall(t, options);
}

async function onlyRecording(org: string, callSid: string) {
  const rows = await recordingsOfCall(t, org, callSid);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

describe('a both_tracks call', () => {
  test('records the caller on the left and the agent on the right, for exactly the media duration', async () => {
    const result = await call({ durationMs: 3000 });
    expect(result.closeCode).toBe(1000);
    const row = await onlyRecording('acme', result.callSid);
    expect(row).toMatchObject({ status: 'completed', channels: 2, sampleRate: 16000, durationMs: 3000, keyMode: 'server' });
    const rec = await fetchRecording(t, row);
    expect(rec.objectSize).toBe(row.sizeBytes);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(3 * 16000);
    const leftMid = sliceMs(left, 16000, 200, 2800);
    const rightMid = sliceMs(right, 16000, 200, 2800);
    const expected = 0.4 * 32767;
    expect(toneAmplitude(leftMid, 16000, CALLER_HZ)).toBeGreaterThan(expected * 0.9);
    expect(toneAmplitude(leftMid, 16000, AGENT_HZ)).toBeLessThan(expected * 0.01);
    expect(toneAmplitude(rightMid, 16000, AGENT_HZ)).toBeGreaterThan(expected * 0.9);
    expect(toneAmplitude(rightMid, 16000, CALLER_HZ)).toBeLessThan(expected * 0.01);
  });

  test.each([8000, 16000, 48000] as const)('keeps both channels on one timeline with exact gaps at %i Hz', async (rate) => {
    const local = await startTestGateway({ recording: { sampleRate: rate, defaults: { enabled: true, stereo: true } } });
    try {
      const account = local.accounts[0]!;
      const result = await simulateTwilioCall({
        url: local.wsUrl,
        signedUrl: `${PUBLIC_URL.replace('https', 'wss')}/twilio/media`,
        accountSid: account.accountSid,
        authToken: account.authToken,
        durationMs: 3000,
        // The same tone on both tracks: wherever both carry media, the channels must match sample for sample.
        inbound: { kind: 'tone', frequencyHz: CALLER_HZ, amplitude: 0.4 },
        outbound: { kind: 'tone', frequencyHz: CALLER_HZ, amplitude: 0.4 },
        gaps: [{ track: 'outbound', startMs: 1000, durationMs: 500 }],
      });
      expect(result.closeCode).toBe(1000);
      const [row] = await recordingsOfCall(local, account.org, result.callSid);
      const rec = await fetchRecording(local, row!);
      const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
      expect(left.length).toBe(3 * rate);
      expect(right.length).toBe(3 * rate);
      // No drift or offset: identical input through identical processing gives identical samples.
      const edgeMs = 5;
      for (const [from, to] of [
        [0, 1000 - edgeMs],
        [1500 + edgeMs, 3000],
      ] as const) {
        const l = sliceMs(left, rate, from, to);
        const r = sliceMs(right, rate, from, to);
        let maxDiff = 0;
        for (let i = 0; i < l.length; i++) maxDiff = Math.max(maxDiff, Math.abs(l[i]! - r[i]!));
        expect(maxDiff).toBeLessThanOrEqual(1);
      }
      // The gap is silence of exactly its length, in the right place; the other channel carries on.
      expect(rms(sliceMs(right, rate, 1000 + edgeMs, 1500 - edgeMs))).toBeLessThan(5);
      expect(rms(sliceMs(right, rate, 1000 - 20, 1000 - edgeMs))).toBeGreaterThan(5000);
      expect(rms(sliceMs(right, rate, 1500 + edgeMs, 1500 + 20))).toBeGreaterThan(5000);
      expect(rms(sliceMs(left, rate, 1000, 1500))).toBeGreaterThan(5000);
    } finally {
      await local.dispose();
    }
  });

  test('a mono recording mixes both parties into one channel', async () => {
    const result = await call({ recording: { enabled: true, stereo: false } });
    const row = await onlyRecording('acme', result.callSid);
    expect(row.channels).toBe(1);
    const rec = await fetchRecording(t, row);
    expect(rec.channelSamples).toHaveLength(1);
    const mid = sliceMs(rec.channelSamples[0]!, 16000, 200, 1800);
    expect(toneAmplitude(mid, 16000, CALLER_HZ)).toBeGreaterThan(0.4 * 32767 * 0.9);
    expect(toneAmplitude(mid, 16000, AGENT_HZ)).toBeGreaterThan(0.4 * 32767 * 0.9);
  });

  test('keeps stream details, dtmf and marks in the metadata, and leaves no spool or dangling upload', async () => {
    const result = await call({
      customParameters: { agentId: 'agent-7', campaign: 'spring' },
      dtmf: [{ atMs: 400, digit: '5' }],
      marks: [{ atMs: 800, name: 'greeting-done' }],
    });
    const row = await onlyRecording('acme', result.callSid);
    expect(row.metadata).toMatchObject({
      streamSid: result.streamSid,
      tracks: ['inbound', 'outbound'],
      customParameters: { agentId: 'agent-7', campaign: 'spring' },
      dtmf: [expect.objectContaining({ digit: '5' })],
      marks: [expect.objectContaining({ name: 'greeting-done' })],
    });
    expect(await readdir(join(t.dataDir, 'spool')).then((f) => f.filter((n) => n.includes(row.id)))).toEqual([]);
    const bucket = await listBucket(t.bucket);
    expect(bucket.multipartUploads).toBe(0);
    expect(bucket.objects).toContain(row.objectKey);
  });

  test('a <Connect><Stream> call (inbound only) records the caller and silence for the agent', async () => {
    const result = await call({ mode: 'connect' });
    const rec = await fetchRecording(t, await onlyRecording('acme', result.callSid));
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(2 * 16000);
    expect(toneAmplitude(sliceMs(left, 16000, 200, 1800), 16000, CALLER_HZ)).toBeGreaterThan(0.4 * 32767 * 0.9);
    expect(rms(right)).toBe(0);
  });

  test('recording can be switched off per stream', async () => {
    const result = await call({ recording: { enabled: false } });
    expect(result.closeCode).toBe(1000);
    expect(await recordingsOfCall(t, 'acme', result.callSid)).toEqual([]);
  });
});

describe('client key mode', () => {
  const clientKey = randomBytes(32).toString('base64');

  test('encrypts with a key derived from the client key, which is stored nowhere', async () => {
    const result = await call({ recording: { enabled: true, key: clientKey } });
    const row = await onlyRecording('acme', result.callSid);
    expect(row).toMatchObject({ keyMode: 'client', keyId: null, wrappedKey: null });
    expect(JSON.stringify(row.metadata)).not.toContain(clientKey);
    const client = s3Client();
    const head = await client.send(new HeadObjectCommand({ Bucket: t.bucket, Key: row.objectKey }));
    client.destroy();
    expect(JSON.stringify(head.Metadata)).not.toContain(clientKey);
    expect(JSON.stringify(t.logs.lines)).not.toContain(clientKey);
    const rec = await fetchRecording(t, row, clientKey);
    expect(toneAmplitude(sliceMs(rec.channelSamples[0]!, 16000, 200, 1800), 16000, CALLER_HZ)).toBeGreaterThan(0.4 * 32767 * 0.9);
    await expect(fetchRecording(t, row, randomBytes(32).toString('base64'))).rejects.toMatchObject({ code: 'CONTAINER_TAMPERED' });
  });

  test.each([
    ['7 characters', 'hunter2'],
    ['a 7-character passphrase', 'Zq7#pX2'],
  ])('refuses a client key shorter than 8 characters (%s) before any audio is accepted', async (_name, key) => {
    const result = await call({ recording: { enabled: true, key } });
    expect(result.closeCode).toBe(4406);
    expect(await recordingsOfCall(t, 'acme', result.callSid)).toEqual([]);
    expect(JSON.stringify(t.logs.lines)).not.toContain(key);
  });
});

describe('A-law (audio/x-alaw, PCMA) streams', () => {
  test('are decoded as A-law: each tone recognised in its channel, for the exact duration', async () => {
    const result = await call({ durationMs: 2000, encoding: 'alaw', recording: { enabled: true, stereo: true } });
    expect(result.closeCode).toBe(1000);
    const row = await onlyRecording('acme', result.callSid);
    expect(row).toMatchObject({ status: 'completed', channels: 2, durationMs: 2000 });
    expect(row.metadata).toMatchObject({ mediaFormat: { encoding: 'audio/x-alaw', sampleRate: 8000, channels: 1 } });
    const rec = await fetchRecording(t, row);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe(2 * 16000);
    const expected = 0.4 * 32767;
    const leftMid = sliceMs(left, 16000, 200, 1800);
    const rightMid = sliceMs(right, 16000, 200, 1800);
    expect(toneAmplitude(leftMid, 16000, CALLER_HZ)).toBeGreaterThan(expected * 0.9);
    expect(toneAmplitude(leftMid, 16000, AGENT_HZ)).toBeLessThan(expected * 0.01);
    expect(toneAmplitude(rightMid, 16000, AGENT_HZ)).toBeGreaterThan(expected * 0.9);
    expect(toneAmplitude(rightMid, 16000, CALLER_HZ)).toBeLessThan(expected * 0.01);
  });
});

describe('the shipped default options (RECORDING_DEFAULT unset)', () => {
  let local: TestGateway;
  beforeAll(async () => {
    const defaults = loadEnv({}).RECORDING_DEFAULT;
    expect(defaults).toEqual({ enabled: true, stereo: false });
    local = await startTestGateway({ recording: { sampleRate: 16000, defaults } });
  });
  afterAll(async () => {
    await local?.dispose();
  });

  test.each([
    { case: 'no recording parameter', recording: undefined, channels: 1 },
    { case: 'stereo omitted', recording: { enabled: true }, channels: 1 },
    { case: 'stereo: true', recording: { enabled: true, stereo: true }, channels: 2 },
  ])('$case: $channels channel(s)', async ({ recording, channels }) => {
    const result = await placeCall(local, { durationMs: 1000, ...(recording ? { recording } : {}) });
    expect(result.closeCode).toBe(1000);
    const [row] = await recordingsOfCall(local, 'acme', result.callSid);
    expect(row).toMatchObject({ status: 'completed', channels, durationMs: 1000 });
    expect(row!.metadata).toMatchObject({ recordingOptions: { stereo: channels === 2 } });
    const rec = await fetchRecording(local, row!);
    const expected = 0.4 * 32767;
    if (channels === 1) {
      // Mono: everyone mixed into the one channel.
      const mid = sliceMs(rec.channelSamples[0]!, 16000, 200, 800);
      expect(toneAmplitude(mid, 16000, CALLER_HZ)).toBeGreaterThan(expected * 0.9);
      expect(toneAmplitude(mid, 16000, AGENT_HZ)).toBeGreaterThan(expected * 0.9);
    } else {
      const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
      expect(toneAmplitude(sliceMs(left, 16000, 200, 800), 16000, CALLER_HZ)).toBeGreaterThan(expected * 0.9);
      expect(toneAmplitude(sliceMs(right, 16000, 200, 800), 16000, AGENT_HZ)).toBeGreaterThan(expected * 0.9);
      expect(toneAmplitude(sliceMs(left, 16000, 200, 800), 16000, AGENT_HZ)).toBeLessThan(expected * 0.01);
    }
  });
});
