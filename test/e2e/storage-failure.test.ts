/**
 * When S3 refuses a recording mid-call, nothing is lost: the call keeps being recorded into the spool, the
 * upload is retried from the spool with backoff, and once S3 takes it again the recording completes whole.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { CreateBucketCommand, DeleteBucketCommand } from '@aws-sdk/client-s3';
import { randomCallSid, simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { toneAmplitude } from '../support/audio.js';
import { s3Client } from '../support/peers.js';
import { fetchRecording, listBucket, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { SIGNED_URL } from '../support/twilio.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startTestGateway({ retry: { initialDelayMs: 50, maxDelayMs: 400 } });
});
afterAll(async () => {
  await t?.dispose();
});

test('a bucket that disappears mid-call delays the recording, retried from the spool until it completes whole', async () => {
  const client = s3Client();
  await client.send(new DeleteBucketCommand({ Bucket: t.bucket }));
  const acme = t.accounts[0]!;
  const callSid = randomCallSid();
  const calling = simulateTwilioCall({
    url: t.wsUrl,
    signedUrl: SIGNED_URL,
    accountSid: acme.accountSid,
    authToken: acme.authToken,
    callSid,
    durationMs: 1000,
    inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
  });
  // S3 refuses every attempt for a while: retried, never failed.
  await expect.poll(() => t.logs.find('upload failed, retrying from the spool').length).toBeGreaterThanOrEqual(3);
  const [waiting] = await recordingsOfCall(t, 'acme', callSid);
  expect(waiting).toMatchObject({ status: 'in_progress' });
  expect(t.logs.find('recording failed')).toEqual([]);
  // Alive, still accepting streams, and saying what waits.
  expect((await fetch(`${t.httpUrl}/healthz`)).status).toBe(200);
  const ready = await fetch(`${t.httpUrl}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.json()).toMatchObject({ status: 'degraded', checks: { storage: false, accepting: true }, uploadBacklog: { recordings: 1 } });
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${t.httpUrl}/metrics`)).text())?.[1]);
  expect(await metric('callvault_upload_backlog_recordings')).toBe(1);
  // The whole second of stereo 16 kHz audio (64 000 bytes of PCM, sealed) waits in the spool.
  await expect.poll(() => metric('callvault_upload_backlog_bytes')).toBeGreaterThan(64_000);

  await client.send(new CreateBucketCommand({ Bucket: t.bucket }));
  client.destroy();
  const result = await calling;
  expect(result.closeCode).toBe(1000);
  const [row] = await recordingsOfCall(t, 'acme', callSid);
  expect(row).toMatchObject({ status: 'completed', durationMs: 1000 });
  const rec = await fetchRecording(t, row!);
  const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
  expect(left.length).toBe(16000);
  expect(toneAmplitude(left.subarray(1600, 14400), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.9);
  expect(toneAmplitude(right.subarray(1600, 14400), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
  expect((await listBucket(t.bucket)).multipartUploads).toBe(0);
});
