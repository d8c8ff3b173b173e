/**
 * The edges between lifecycle steps: a delete racing a recording that is still finalising, a destroy
 * arriving while a recording completes, a recording whose spool cannot be created.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { listBucket, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { apiJson } from '../manage/support.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startTestGateway();
});
afterAll(async () => {
  await t?.dispose();
});

async function gaugeValue(name: string): Promise<number> {
  const body = (await t.gateway.metrics.render()).body;
  const line = body.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

test('stop then delete at once: the finalising recording is found and leaves no object and no row', async () => {
  const s = await RawTwilioStream.open(t, t.accounts[0]!);
  s.start();
  s.media(0, 1000, { inbound: 440, outbound: 1000 });
  await s.flushed(t, 'acme', 1000);
  const [row] = await recordingsOfCall(t, 'acme', s.callSid);
  const stop = apiJson(t, 'POST', '/api/call-recordings/stop', { callSid: s.callSid });
  const del = apiJson(t, 'DELETE', `/api/call-recordings/${row!.recordingSid}`);
  // Whichever the gateway handles first, the delete wins: the stop either finished the recording (200) or
  // found it already gone (404).
  expect((await del).status).toBe(204);
  expect([200, 404]).toContain((await stop).status);
  await t.gateway.liveCall('acme', s.callSid)!.close();
  expect(await recordingsOfCall(t, 'acme', s.callSid)).toEqual([]);
  const bucket = await listBucket(t.bucket);
  expect(bucket.objects.filter((key) => key.includes(s.callSid))).toEqual([]);
  expect(bucket.multipartUploads).toBe(0);
  s.stop();
  await s.closed;
});

test('a destroy that arrives while a recording completes counts it once', async () => {
  const before = await gaugeValue('callvault_active_recordings');
  const s = await RawTwilioStream.open(t, t.accounts[0]!);
  s.start();
  s.media(0, 500, { inbound: 440, outbound: 1000 });
  await s.flushed(t, 'acme', 500);
  const call = t.gateway.liveCall('acme', s.callSid)!;
  const recording = call.recording!;
  const closing = recording.close(call.mediaEndMs);
  recording.destroy();
  const summary = await closing;
  await recording.settled;
  const [row] = await recordingsOfCall(t, 'acme', s.callSid);
  expect(row!.status).toBe(summary.status === 'completed' ? 'completed' : 'failed');
  expect(await gaugeValue('callvault_active_recordings')).toBe(before);
  s.stop();
  await s.closed;
});

test('a recording whose spool cannot be created is marked failed, not left in progress', async () => {
  const spoolDir = join(t.dataDir, 'spool');
  await rm(spoolDir, { recursive: true, force: true });
  await writeFile(spoolDir, 'not a directory');
  try {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    expect((await s.closed).code).toBe(1011);
    const [row] = await recordingsOfCall(t, 'acme', s.callSid);
    expect(row).toMatchObject({ status: 'failed', errorCode: 'SPOOL_FAILED' });
  } finally {
    await rm(spoolDir, { force: true });
  }
});
