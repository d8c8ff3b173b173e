/**
 * S3 unreachable at the network level, mid-call and through finalisation: a real TCP fault proxy between the
 * gateway and MinIO first refuses connections (ECONNREFUSED), or accepts them and never answers (a hanging
 * S3, failed by S3_REQUEST_TIMEOUT_MS). The call keeps recording into the spool, the upload is retried from
 * the spool with backoff, the gateway stays alive and says what waits, the spool serves the audio, and once
 * S3 answers again the recording completes whole, with no multipart upload left behind.
 */
import { afterEach, expect, test } from 'vitest';
import { randomCallSid, simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { sliceMs, toneAmplitude } from '../support/audio.js';
import { FaultProxy, type FaultMode } from '../support/fault-proxy.js';
import { s3Peer } from '../support/peers.js';
import { fetchRecording, listBucket, recordingsOfCall, startTestGateway, testAccount, type TestGateway } from '../support/gateway.js';
import { SIGNED_URL } from '../support/twilio.js';
import { startGateway } from '../../dist/bootstrap/wiring.js';
import { api, decodeWav, recordingPath } from '../api/support.js';

/** 100 s of stereo 16 kHz audio: 6.4 MB of PCM, more than one 5 MiB part (81.9 s). */
const CALL_MS = 100_000;
/** Sent at once, so the first part is cut and uploaded while S3 still answers; the last 15 s run in real time. */
const AHEAD_MS = 85_000;
const PART_BYTES = 5 * 1024 * 1024;
/** How long S3 stays away after the call ended, at least: enough for several retries of the finished upload. */
const OUTAGE_AFTER_CALL_MS = 5_000;
const TONE_FLOOR = 0.4 * 32767 * 0.9;

let t: TestGateway | undefined;
let proxy: FaultProxy | undefined;
afterEach(async () => {
  await proxy?.setMode('forward');
  await t?.dispose();
  await proxy?.close();
  t = undefined;
  proxy = undefined;
});

async function metric(gw: TestGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  const value = new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(text)?.[1];
  return value === undefined ? Number.NaN : Number(value);
}

function expectTones(left: Int16Array, right: Int16Array, atMs: readonly number[]): void {
  for (const at of atMs) {
    expect(toneAmplitude(sliceMs(left, 16000, at, at + 500), 16000, 440), `440 Hz at ${at} ms`).toBeGreaterThan(TONE_FLOOR);
    expect(toneAmplitude(sliceMs(right, 16000, at, at + 500), 16000, 1000), `1000 Hz at ${at} ms`).toBeGreaterThan(TONE_FLOOR);
  }
}

/**
 * A gateway whose S3 is behind the fault proxy, and a 100 s two-track call on it (the first 85 s sent at once),
 * once its first 5 MiB part is in S3: a multipart upload is open when the test breaks S3.
 */
async function callThroughProxy(closeTimeoutMs: number): Promise<{ gw: TestGateway; proxy: FaultProxy; callSid: string; calling: ReturnType<typeof simulateTwilioCall> }> {
  const fault = (proxy = await FaultProxy.start(s3Peer().endpoint));
  const accounts = [testAccount('acme')];
  const gw = (t = await startTestGateway({
    accounts,
    twilio: { accounts, validateSignatures: true, maxAheadOfClockMs: AHEAD_MS + 30_000 },
    retry: { initialDelayMs: 100, maxDelayMs: 1_000 },
    // A hanging S3 fails each request after 1 s of silence instead of the default 60 s.
    s3: { endpoint: fault.endpoint, connectTimeoutMs: 1_000, requestTimeoutMs: 1_000 },
  }));
  const acme = accounts[0]!;
  const callSid = randomCallSid();
  const calling = simulateTwilioCall({
    url: gw.wsUrl,
    signedUrl: SIGNED_URL,
    accountSid: acme.accountSid,
    authToken: acme.authToken,
    callSid,
    durationMs: CALL_MS,
    maxAheadMs: AHEAD_MS,
    closeTimeoutMs,
    inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
  });
  await expect.poll(() => metric(gw, 'callvault_s3_uploaded_bytes_total'), { timeout: 60_000 }).toBeGreaterThanOrEqual(PART_BYTES);
  return { gw, proxy: fault, callSid, calling };
}

test.each<{ mode: FaultMode; what: string }>([
  { mode: 'refuse', what: 'refuses connections' },
  { mode: 'hang', what: 'accepts connections and never answers' },
])(
  'S3 that $what mid-call and through finalisation: recorded into the spool, retried, completed whole when it is back',
  async ({ mode }) => {
    // The gateway closes the stream once the recording is in S3: after the outage.
    const { gw, proxy, callSid, calling } = await callThroughProxy(180_000);
    const mediaAtFaultMs = gw.gateway.liveCall('acme', callSid)?.mediaEndMs;
    // At least the last 5 s of the call are sent while S3 is away.
    expect(mediaAtFaultMs).toBeLessThan(CALL_MS - 5_000);
    await proxy.setMode(mode);
    const faultAt = Date.now();
    if (mode === 'refuse') expect(await proxy.probeRefused()).toBe(true);

    // Mid-call, S3 away: the call is still live and ?live=1 serves what the spool holds.
    const [live] = await recordingsOfCall(gw, 'acme', callSid);
    expect(live).toMatchObject({ status: 'in_progress' });
    const liveRes = await api(gw, recordingPath(callSid, '?live=1'));
    expect(liveRes.status).toBe(200);
    const liveWav = decodeWav(Buffer.from(await liveRes.arrayBuffer()));
    const liveSamples = liveWav.channelSamples[0]!.length;
    expect(liveSamples).toBeGreaterThanOrEqual((PART_BYTES / 4) * 0.9);
    expect(liveSamples).toBeLessThan((CALL_MS / 1000) * 16000);
    expectTones(liveWav.channelSamples[0]!, liveWav.channelSamples[1]!, [1_000, Math.floor((liveSamples / 16) * 0.9)]);
    expect(gw.gateway.liveCall('acme', callSid)).toBeDefined();

    // The call ends while S3 is still away: complete in the spool, `uploading`, its upload retried.
    await expect.poll(async () => (await recordingsOfCall(gw, 'acme', callSid))[0]?.status, { timeout: 60_000 }).toBe('uploading');
    const endedAt = Date.now();
    await expect.poll(() => gw.logs.find('upload failed, retrying from the spool').length, { timeout: 60_000 }).toBeGreaterThanOrEqual(3);
    await expect.poll(() => Date.now() - endedAt >= OUTAGE_AFTER_CALL_MS, { timeout: OUTAGE_AFTER_CALL_MS + 5_000 }).toBe(true);
    expect(gw.logs.find('recording failed')).toEqual([]);
    const failures = gw.logs.find('upload failed, retrying from the spool');
    // The failures are the fault's (refused connects, or requests timed out on a silent socket), classified retryable.
    expect(JSON.stringify(failures)).toContain(mode === 'refuse' ? 'ECONNREFUSED' : 'socket timed out after 1000 ms of inactivity');
    for (const line of failures) expect(line['err']).toMatchObject({ code: 'UPLOAD_FAILED', retryable: true });
    if (mode === 'hang') {
      expect(proxy.stats.stalled).toBeGreaterThan(0);
      expect(proxy.stats.discardedBytes).toBeGreaterThan(0);
    } else {
      expect(proxy.stats.refusedProbes).toBe(1);
    }

    // Alive, degraded, and saying what waits.
    expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gw.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'degraded', checks: { storage: false, accepting: true }, uploadBacklog: { recordings: 1 } });
    expect(await metric(gw, 'callvault_upload_backlog_recordings')).toBeGreaterThanOrEqual(1);
    // The whole call waits in the spool: 6.4 MB of PCM, sealed, plus the container's overhead.
    expect(await metric(gw, 'callvault_upload_backlog_bytes')).toBeGreaterThan((CALL_MS / 1000) * 64_000);

    // The API says `uploading` and the spool serves the whole call, both channels.
    const [uploading] = await recordingsOfCall(gw, 'acme', callSid);
    const listed = await api(gw, `/api/call-recordings/${uploading!.recordingSid}`);
    expect(((await listed.json()) as { recording: { status: string } }).recording.status).toBe('uploading');
    const spooled = await api(gw, recordingPath(callSid));
    expect(spooled.status).toBe(200);
    expect(spooled.headers.get('x-recording-status')).toBe('uploading');
    const spooledWav = decodeWav(Buffer.from(await spooled.arrayBuffer()));
    expect(spooledWav.channelSamples[0]!.length).toBe((CALL_MS / 1000) * 16000);
    expectTones(spooledWav.channelSamples[0]!, spooledWav.channelSamples[1]!, [1_000, 50_000, 90_000, 98_500]);
    const outageMs = Date.now() - faultAt;

    // S3 answers again: the upload resumes from the spool and the recording completes whole.
    await proxy.setMode('forward');
    const result = await calling;
    expect(result).toMatchObject({ closeCode: 1000, closedBy: 'server' });
    const [row] = await recordingsOfCall(gw, 'acme', callSid);
    expect(row).toMatchObject({ status: 'completed', durationMs: CALL_MS });
    expect(gw.logs.find('recording failed')).toEqual([]);
    const rec = await fetchRecording(gw, row!);
    const [left, right] = rec.channelSamples as [Int16Array, Int16Array];
    expect(left.length).toBe((CALL_MS / 1000) * 16000);
    expect(right.length).toBe((CALL_MS / 1000) * 16000);
    // Before the fault, while S3 was away mid-call, and through the last second.
    expectTones(left, right, [1_000, 50_000, 84_000, 90_000, 98_500]);
    const bucket = await listBucket(gw.bucket);
    expect(bucket).toEqual({ objects: [row!.objectKey], multipartUploads: 0 });
    // The multipart upload open when S3 went away could not be aborted then; it was once S3 was back.
    expect(gw.logs.find('multipart upload of a failed attempt aborted').length).toBeGreaterThanOrEqual(1);
    expect(gw.logs.find('multipart uploads left open in S3')).toEqual([]);
    expect(await metric(gw, 'callvault_upload_backlog_recordings')).toBe(0);
    expect(outageMs).toBeGreaterThan(OUTAGE_AFTER_CALL_MS);
  },
  240_000,
);

test('multipart uploads S3 could not abort outlive the gateway: the next start aborts every one by the ids its row keeps', async () => {
  const { gw, proxy, callSid, calling } = await callThroughProxy(60_000);
  const [row] = await recordingsOfCall(gw, 'acme', callSid);
  await proxy.setMode('refuse');
  // The attempt under way fails and so does its abort: the row keeps its UploadId, and S3 still has it open.
  await expect.poll(() => gw.logs.find('upload failed, retrying from the spool').length, { timeout: 60_000 }).toBeGreaterThanOrEqual(2);
  const [first] = await gw.gateway.db.recordings.openUploadIds(row!.id);
  expect(first).toBeDefined();
  // S3 answers for a moment: a new attempt opens another multipart upload (the row's latest UploadId)...
  await proxy.setMode('forward');
  await expect.poll(async () => (await gw.gateway.db.recordings.openUploadIds(row!.id)).length, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
  // ...and goes away again before that attempt can finish: now two uploads are open, the older one no longer the row's latest.
  const failuresSoFar = gw.logs.find('upload failed, retrying from the spool').length;
  await proxy.setMode('refuse');
  await expect.poll(() => gw.logs.find('upload failed, retrying from the spool').length, { timeout: 60_000 }).toBeGreaterThan(failuresSoFar);
  const open = await gw.gateway.db.recordings.openUploadIds(row!.id);
  expect(open).toContain(first);
  expect(open.length).toBeGreaterThanOrEqual(2);
  expect(await gw.gateway.db.recordings.uploadId(row!.id)).not.toBe(first);
  expect((await listBucket(gw.bucket)).multipartUploads).toBeGreaterThanOrEqual(2);

  // The gateway goes away before S3 is back (its memory of the orphan with it); then S3 returns.
  gw.gateway.destroy();
  await calling.catch(() => undefined);
  await proxy.setMode('forward');
  const restarted = await startGateway({ ...gw.gateway.options, port: 0 });
  try {
    await expect.poll(async () => (await restarted.db.recordings.get('acme', row!.id))?.status, { timeout: 60_000 }).toBe('completed');
    const done = (await restarted.db.recordings.get('acme', row!.id))!;
    expect(await restarted.db.recordings.openUploadIds(row!.id)).toEqual([]);
    expect(await listBucket(gw.bucket)).toEqual({ objects: [done.objectKey], multipartUploads: 0 });
    // What reached the journal before the crash is the recording: at least the 85 s sent at once.
    expect(done.durationMs).toBeGreaterThanOrEqual(AHEAD_MS);
    const rec = await fetchRecording(gw, done);
    expectTones(rec.channelSamples[0]!, rec.channelSamples[1]!, [1_000, 50_000, 84_000]);
  } finally {
    await restarted.close();
  }
}, 240_000);
