/**
 * DELETE /calls/:callId/recording: the object and the metadata go, nothing is left in the bucket (no
 * object, no multipart upload), concurrent deletions agree, and an in-progress recording is stopped.
 */
import { randomCallSid } from '../../dist/ingest/twilio/index.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { listBucket, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { api, inProgressRecording, placeCall, recordingPath, spoolFilesOf, until } from './support.js';

let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway();
});

afterAll(async () => {
  await t?.dispose();
});

/** The sealed transcripts, events and metadata (docs/api.md, "Artifacts at rest") the database points at. */
async function sealedArtifactKeys(): Promise<string[]> {
  const client = new pg.Client({ connectionString: t.databaseUrl });
  await client.connect();
  try {
    return (await client.query<{ object_key: string }>('SELECT object_key FROM call_artifact_objects')).rows.map((r) => r.object_key);
  } finally {
    await client.end();
  }
}

/** Every object in the bucket belongs to a recording row or a call's sealed artifacts, and no multipart upload is open. */
async function expectNoOrphans(): Promise<void> {
  const bucket = await listBucket(t.bucket);
  const rows = [
    ...(await t.gateway.db.recordings.list('acme', { page: 0, limit: 1000 })).rows,
    ...(await t.gateway.db.recordings.list('globex', { page: 0, limit: 1000 })).rows,
  ];
  expect(bucket.multipartUploads).toBe(0);
  expect(bucket.objects.sort()).toEqual([...rows.filter((r) => r.status === 'completed').map((r) => r.objectKey), ...(await sealedArtifactKeys())].sort());
}

describe('deleting a completed recording', () => {
  test('204 once the object is gone and the metadata cleared; then 404', async () => {
    const keep = await placeCall(t);
    const result = await placeCall(t);
    const [row] = await recordingsOfCall(t, 'acme', result.callSid);
    expect((await listBucket(t.bucket)).objects).toContain(row!.objectKey);

    const res = await api(t, recordingPath(result.callSid), { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
    expect((await listBucket(t.bucket)).objects).not.toContain(row!.objectKey);
    expect(await recordingsOfCall(t, 'acme', result.callSid)).toEqual([]);
    expect((await api(t, recordingPath(result.callSid))).status).toBe(404);
    expect((await api(t, recordingPath(result.callSid), { method: 'DELETE' })).status).toBe(404);
    // The other call's recording is untouched.
    expect((await api(t, recordingPath(keep.callSid), { method: 'HEAD' })).status).toBe(200);
    await expectNoOrphans();
  });

  test('every recording of the call goes, not only the latest', async () => {
    const first = await placeCall(t, { durationMs: 400 });
    // The same CallSid streamed again (a reconnect): a second recording of one call.
    await placeCall(t, { durationMs: 400, callSid: first.callSid });
    expect(await recordingsOfCall(t, 'acme', first.callSid)).toHaveLength(2);
    expect((await api(t, recordingPath(first.callSid), { method: 'DELETE' })).status).toBe(204);
    expect(await recordingsOfCall(t, 'acme', first.callSid)).toEqual([]);
    await expectNoOrphans();
  });

  test.each([2, 5])('%i concurrent deletions: each answers 204 or 404, at least one 204, nothing left', async (n) => {
    const result = await placeCall(t);
    const statuses = await Promise.all(
      Array.from({ length: n }, () => api(t, recordingPath(result.callSid), { method: 'DELETE' }).then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 204 || s === 404)).toBe(true);
    expect(statuses).toContain(204);
    expect(await recordingsOfCall(t, 'acme', result.callSid)).toEqual([]);
    expect((await api(t, recordingPath(result.callSid))).status).toBe(404);
    await expectNoOrphans();
    expect(t.logs.lines.filter((l) => l['level'] === 50)).toEqual([]);
  });
});

describe('deleting a recording in progress', () => {
  test('stops it, aborts its upload, removes its spool and its row; the rest of the call records nothing', async () => {
    const callSid = randomCallSid();
    const calling = placeCall(t, { callSid, durationMs: 4000, realtime: true });
    // This call's recording (an earlier test's may still be finishing).
    const row = await until(async () => (await recordingsOfCall(t, 'acme', callSid)).find((r) => r.status === 'in_progress'), 'a recording in progress');
    expect((await inProgressRecording(t, 'acme', callSid)).id).toBe(row.id);
    expect(await spoolFilesOf(t, row.id)).not.toEqual([]);
    // The row is written first, the recording registered on its call once its spool is ready: wait for that.
    await expect.poll(() => t.gateway.findLiveRecording('acme', row.id)).not.toBeNull();
    // Another organisation cannot find it, let alone stop it.
    expect(t.gateway.findLiveRecording('globex', row.id)).toBeNull();

    const res = await api(t, recordingPath(callSid), { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(t.gateway.findLiveRecording('acme', row.id)?.state ?? 'destroyed').toBe('destroyed');
    expect(await spoolFilesOf(t, row.id)).toEqual([]);
    expect(await recordingsOfCall(t, 'acme', callSid)).toEqual([]);
    await expectNoOrphans();

    // The stream carries on to its end, which closes it normally (a deletion is not a failure of the call);
    // nothing it sends afterwards resurrects the recording.
    expect((await calling).closeCode).toBe(1000);
    expect(await recordingsOfCall(t, 'acme', callSid)).toEqual([]);
    expect((await api(t, recordingPath(callSid))).status).toBe(404);
    expect(await spoolFilesOf(t, row.id)).toEqual([]);
    await expectNoOrphans();
    // Only the deliberate stop is logged as a failure, never a failed metadata update.
    expect(t.logs.find('could not mark recording failed')).toEqual([]);
  });
});
