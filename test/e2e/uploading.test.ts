/**
 * Audio that is complete on the gateway's disk but not yet in S3 is `uploading`: visible in the API, served
 * from the spool, and completed once S3 is back — for live calls and for imports, and across a restart.
 */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, DeleteBucketCommand } from '@aws-sdk/client-s3';
import { afterEach, expect, test } from 'vitest';
import type { Gateway } from '../../dist/gateway/gateway.js';
import { startGateway } from '../../dist/bootstrap/wiring.js';
import { randomCallSid, simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { toneAmplitude } from '../support/audio.js';
import { s3Client } from '../support/peers.js';
import { listBucket, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { SIGNED_URL } from '../support/twilio.js';
import { api, decodeWav, recordingPath, window } from '../api/support.js';
import { apiJson, elevenLabsSignature, mpegFrames } from '../manage/support.js';

/** MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: 417-byte frames of 1152 samples. */
const MPEG1_L3_44K_MONO = { header: [0xff, 0xfb, 0x90, 0xc0], length: 417 };
const SECRET = `wsec_${randomBytes(24).toString('hex')}`;

let t: TestGateway | undefined;
let restarted: Gateway | undefined;
afterEach(async () => {
  await restarted?.close();
  restarted = undefined;
  await t?.dispose();
  t = undefined;
});

async function setBucket(bucket: string, present: boolean): Promise<void> {
  const client = s3Client();
  try {
    await client.send(present ? new CreateBucketCommand({ Bucket: bucket }) : new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

async function apiStatus(gw: TestGateway, sid: string): Promise<string> {
  const res = await apiJson(gw, 'GET', `/api/call-recordings/${sid}`);
  return ((await res.json()) as { recording: { status: string } }).recording.status;
}

test('a call that ends while S3 is away is uploading: listed so, served whole from the spool, completed when S3 is back', async () => {
  const gw = (t = await startTestGateway({ retry: { initialDelayMs: 50, maxDelayMs: 400 } }));
  await setBucket(gw.bucket, false);
  const acme = gw.accounts[0]!;
  const callSid = randomCallSid();
  const calling = simulateTwilioCall({
    url: gw.wsUrl,
    signedUrl: SIGNED_URL,
    accountSid: acme.accountSid,
    authToken: acme.authToken,
    callSid,
    durationMs: 1000,
    inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
  });
  await expect.poll(async () => (await recordingsOfCall(gw, 'acme', callSid))[0]?.status).toBe('uploading');
  const [row] = await recordingsOfCall(gw, 'acme', callSid);
  expect(await apiStatus(gw, row!.recordingSid)).toBe('uploading');
  const listed = await apiJson(gw, 'GET', '/api/call-recordings?status=uploading');
  expect(((await listed.json()) as { recordings: Array<{ recordingSid: string }> }).recordings.map((r) => r.recordingSid)).toEqual([row!.recordingSid]);

  // The whole second, both channels, from the spool: S3 has none of it.
  const res = await api(gw, recordingPath(callSid));
  expect(res.status).toBe(200);
  expect(res.headers.get('x-recording-status')).toBe('uploading');
  const full = Buffer.from(await res.arrayBuffer());
  const wav = decodeWav(full);
  expect(wav.channelSamples[0]!.length).toBe(16000);
  expect(toneAmplitude(window(wav.channelSamples[0]!, 16000, 100, 900), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.9);
  expect(toneAmplitude(window(wav.channelSamples[1]!, 16000, 100, 900), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
  // A Range inside the spooled WAV works as for a completed one.
  const ranged = await api(gw, recordingPath(callSid), { headers: { range: 'bytes=44-1043' } });
  expect(ranged.status).toBe(206);
  expect(Buffer.from(await ranged.arrayBuffer()).equals(full.subarray(44, 1044))).toBe(true);

  await setBucket(gw.bucket, true);
  expect((await calling).closeCode).toBe(1000);
  await expect.poll(async () => (await recordingsOfCall(gw, 'acme', callSid))[0]?.status).toBe('completed');
  expect((await recordingsOfCall(gw, 'acme', callSid))[0]).toMatchObject({ durationMs: 1000 });
  expect((await listBucket(gw.bucket)).multipartUploads).toBe(0);
});

test('an import while S3 is away is stored as uploading, survives a restart, and the next start completes it', async () => {
  const gw = (t = await startTestGateway({
    retry: { initialDelayMs: 50, maxDelayMs: 400 },
    elevenlabs: { webhookSecrets: [{ org: 'acme', secret: SECRET }] },
  }));
  await setBucket(gw.bucket, false);
  const audio = mpegFrames(MPEG1_L3_44K_MONO, 40);
  const conversationId = `conv_${randomBytes(12).toString('hex')}`;
  const timestamp = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({
    type: 'post_call_audio',
    event_timestamp: timestamp,
    data: { agent_id: 'agent_1', conversation_id: conversationId, full_audio: audio.toString('base64') },
  });
  const res = await fetch(`${gw.httpUrl}/webhooks/elevenlabs-post-call`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'elevenlabs-signature': elevenLabsSignature(body, SECRET, timestamp) },
    body,
  });
  expect(res.status).toBe(200);
  const stored = (await res.json()) as { outcome: string; status: string; recordingSid: string };
  expect(stored).toMatchObject({ outcome: 'stored', status: 'uploading' });
  expect(await apiStatus(gw, stored.recordingSid)).toBe('uploading');
  // Served from the spool, byte for byte.
  const media = await api(gw, `/api/call-recordings/${stored.recordingSid}/media`);
  expect(media.status).toBe(200);
  expect(Buffer.from(await media.arrayBuffer()).equals(audio)).toBe(true);

  // The gateway stops before S3 comes back: the import stays in the spool, still uploading.
  await gw.gateway.close();
  await setBucket(gw.bucket, true);
  restarted = await startGateway({ ...gw.gateway.options, port: 0 });
  await expect.poll(async () => (await restarted!.db.recordings.get('acme', stored.recordingSid))?.status).toBe('completed');
  expect(gw.logs.find('sealed recording found in the spool')).toHaveLength(1);
  const back = await fetch(`http://127.0.0.1:${restarted.port}/api/call-recordings/${stored.recordingSid}/media`, {
    headers: { authorization: `Bearer ${gw.gateway.options.apiKeys.find((k) => k.org === 'acme')!.key}` },
  });
  expect(back.status).toBe(200);
  expect(Buffer.from(await back.arrayBuffer()).equals(audio)).toBe(true);
  expect((await listBucket(gw.bucket)).multipartUploads).toBe(0);
});
