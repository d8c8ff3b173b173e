/**
 * When S3 refuses a recording, the upload is aborted (nothing dangling), the row says why, and the spool
 * keeps every encrypted byte: the local record of truth a later retry can upload from.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DeleteBucketCommand } from '@aws-sdk/client-s3';
import { simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { decryptStream, unwrapDataKey } from '../../dist/crypto/index.js';
import { splitChannels, toneAmplitude } from '../support/audio.js';
import { s3Client } from '../support/peers.js';
import { listBucket, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { SIGNED_URL } from '../support/twilio.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startTestGateway();
});
afterAll(async () => {
  await t?.dispose();
});

test('a bucket that disappears mid-call fails the recording with UPLOAD_FAILED and keeps the spool', async () => {
  const client = s3Client();
  await client.send(new DeleteBucketCommand({ Bucket: t.bucket }));
  client.destroy();
  const acme = t.accounts[0]!;
  const result = await simulateTwilioCall({
    url: t.wsUrl,
    signedUrl: SIGNED_URL,
    accountSid: acme.accountSid,
    authToken: acme.authToken,
    durationMs: 1000,
    inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
  });
  expect(result.closeCode).toBe(1011);
  const [row] = await recordingsOfCall(t, 'acme', result.callSid);
  expect(row).toMatchObject({ status: 'failed', errorCode: 'UPLOAD_FAILED' });
  await expect(listBucket(t.bucket)).rejects.toMatchObject({ name: 'NoSuchBucket' });

  // The spool still holds the complete, decryptable recording.
  const spoolDir = join(t.dataDir, 'spool');
  expect(await readdir(spoolDir)).toEqual(expect.arrayContaining([`${row!.id}.cvr`, `${row!.id}.json`]));
  const bytes = await readFile(join(spoolDir, `${row!.id}.cvr`));
  const chunks: Uint8Array[] = [];
  for await (const plain of decryptStream(
    (async function* () {
      yield new Uint8Array(bytes);
    })(),
    () => unwrapDataKey(t.gateway.options.keyring.all, row!.keyId ?? '', row!.wrappedKey ?? new Uint8Array()),
  )) {
    chunks.push(Uint8Array.from(plain));
  }
  const [left, right] = splitChannels(Buffer.concat(chunks), 2) as [Int16Array, Int16Array];
  expect(left.length).toBe(16000);
  expect(toneAmplitude(left.subarray(1600, 14400), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.9);
  expect(toneAmplitude(right.subarray(1600, 14400), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
  expect(t.logs.find('recording failed')).toEqual([expect.objectContaining({ code: 'UPLOAD_FAILED', recordingSid: row!.recordingSid })]);
});
