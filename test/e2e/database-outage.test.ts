/**
 * PostgreSQL away mid-call: a private PostgreSQL instance is stopped while a call records and started again
 * later. The live call keeps recording into the spool, a stream that arrives meanwhile is refused with 1013
 * (DATABASE_UNAVAILABLE), and once the database is back the row updates go through: the recording completes
 * with its whole duration and the call row is ended.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startEmbeddedPostgres } from '../../dist/db/embedded.js';
import { randomCallSid } from '../../dist/ingest/twilio/index.js';
import { toneAmplitude } from '../support/audio.js';
import { fetchRecording, startTestGateway, type TestGateway } from '../support/gateway.js';
import { placeCall } from '../support/twilio.js';

let pgDir: string;
let pg: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
let t: TestGateway;

beforeAll(async () => {
  pgDir = await mkdtemp(join(tmpdir(), 'callvault-pg-outage-'));
  pg = await startEmbeddedPostgres({ dataDir: pgDir, port: 0 });
  t = await startTestGateway({ databaseUrl: pg.url, retry: { initialDelayMs: 100, maxDelayMs: 500 } });
});

afterAll(async () => {
  await t?.gateway.close();
  await pg?.stop();
  await rm(pgDir, { recursive: true, force: true });
});

test('a database restart mid-call delays the row updates; the recording completes whole and new streams meanwhile get 1013', async () => {
  const port = Number(new URL(pg.url).port);
  const callSid = randomCallSid();
  // The stream stays open until its recording is final, which waits for the database: the simulator waits too.
  const calling = placeCall(t, { callSid, durationMs: 4000, realtime: true, closeTimeoutMs: 45_000 });
  await expect.poll(() => t.gateway.liveCall('acme', callSid)?.recording ?? undefined).toBeDefined();
  await pg.stop();

  const refused = await placeCall(t, { durationMs: 400 });
  expect(refused.closeCode).toBe(1013);
  expect(refused.closeReason).toBe('DATABASE_UNAVAILABLE');

  // The call ends while the database is still away; its completion waits and retries.
  await new Promise((resolve) => setTimeout(resolve, 20_000));
  expect(t.logs.find('could not mark recording completed').length).toBeGreaterThan(0);
  pg = await startEmbeddedPostgres({ dataDir: pgDir, port });
  const result = await calling;
  expect(result.closeCode).toBe(1000);
  const [row] = (await t.gateway.db.recordings.list('acme', { callSid, page: 0, limit: 5 })).rows;
  expect(row).toMatchObject({ status: 'completed', durationMs: 4000 });
  expect(await t.gateway.db.calls.getByExternalId('acme', callSid, 'twilio')).toMatchObject({ status: 'ended' });
  const [left, right] = (await fetchRecording(t, row!)).channelSamples as [Int16Array, Int16Array];
  expect(left.length).toBe(64000);
  expect(toneAmplitude(left.subarray(1600, 62400), 16000, 440)).toBeGreaterThan(0.4 * 32767 * 0.9);
  expect(toneAmplitude(right.subarray(1600, 62400), 16000, 1000)).toBeGreaterThan(0.4 * 32767 * 0.9);
});
