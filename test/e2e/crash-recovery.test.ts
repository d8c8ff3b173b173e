/**
 * Nothing lost to a crash: a real `node dist/main.js` is killed with SIGKILL mid-call; started again on the
 * same DATA_DIR it finishes every recording it owned from its frame journal before it accepts streams.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createDatabase } from '../../dist/db/index.js';
import { createLogger } from '../../dist/log/index.js';
import { decryptStream, deriveClientDataKeyFor, unwrapDataKey } from '../../dist/crypto/index.js';
import { randomCallSid, simulateTwilioCall } from '../../dist/ingest/twilio/index.js';
import { sliceMs, splitChannels, toneAmplitude } from '../support/audio.js';
import { PUBLIC_URL, listBucket, testAccount } from '../support/gateway.js';
import { freshBucket, freshDatabase, s3Client } from '../support/peers.js';
import { gatewayEnv, startGatewayProcess } from '../support/process.js';
import { SIGNED_URL } from '../support/twilio.js';

const CALLER_HZ = 440;
const AGENT_HZ = 1000;
const AMPLITUDE = 0.4;
const CLIENT_KEY = randomBytes(32).toString('hex');
/** What the durability cadence promises: at most this much audio received before the kill is lost. */
const MAX_LOSS_MS = 200;

async function framesReceived(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const match = /^callvault_frames_received_total\{source="twilio",track="inbound"\} (\d+)/m.exec(text);
  return Number(match?.[1] ?? 0);
}

test.each([
  ['server key', undefined, false],
  ['client key', CLIENT_KEY, false],
  // A passphrase: the recovered container carries the same scrypt parameters (from the manifest) as the lost one.
  ['client passphrase key', 'per-instance-key', false],
  // The power goes with the process: the journals' buffered writes are lost (cut to nothing here, the worst
  // case), only what the commit log's synchronous writes hold is on disk. The restart puts it back first.
  ['server key, power loss', undefined, true],
])('SIGKILL mid-call (%s): the restart finishes the recording from the spool, with the audio received before the kill', async (_mode, key, powerLoss) => {
  const db = await freshDatabase();
  const bucket = await freshBucket();
  const dataDir = await mkdtemp(join(tmpdir(), 'callvault-crash-'));
  const account = testAccount('acme');
  const masterKey = randomBytes(32);
  const env = gatewayEnv(
    { dataDir, databaseUrl: db.url, bucket, publicUrl: PUBLIC_URL },
    {
      MASTER_KEY: masterKey.toString('base64'),
      MASTER_KEY_ID: 'crash-test',
      TWILIO_ACCOUNTS: `acme:${account.accountSid}:${account.authToken}`,
      API_KEYS: `acme:acme-crash-${randomBytes(12).toString('hex')}`,
    },
  );
  const reader = createDatabase({ url: db.url, logger: createLogger({ level: 'silent' }) });
  let first = startGatewayProcess(env);
  let second: ReturnType<typeof startGatewayProcess> | undefined;
  try {
    const port = await first.listening();
    const callSid = randomCallSid();
    const calling = simulateTwilioCall({
      url: `ws://127.0.0.1:${port}/twilio/media`,
      signedUrl: SIGNED_URL,
      accountSid: account.accountSid,
      authToken: account.authToken,
      callSid,
      durationMs: 10_000,
      realtime: true,
      recording: { enabled: true, stereo: true, ...(key ? { key } : {}) },
      inbound: { kind: 'tone', frequencyHz: CALLER_HZ, amplitude: AMPLITUDE },
      outbound: { kind: 'tone', frequencyHz: AGENT_HZ, amplitude: AMPLITUDE },
    }).catch((err: unknown) => err);
    // About three seconds of media in, then the kill: no drain, no finalisation, nothing flushed on the way out.
    let before = 0;
    await expect.poll(async () => (before = await framesReceived(port)), { timeout: 20_000 }).toBeGreaterThanOrEqual(150);
    await first.kill('SIGKILL');
    await calling;

    const [orphan] = (await reader.recordings.list('acme', { callSid, page: 0, limit: 10 })).rows;
    expect(orphan).toMatchObject({ status: 'in_progress' });
    // The kill left the commit log's segment behind: the restart reads it, then deletes it.
    const segmentsLeft = await readdir(join(dataDir, 'commit-log'));
    expect(segmentsLeft).toHaveLength(1);
    if (powerLoss) {
      const journals = (await readdir(join(dataDir, 'spool'))).filter((name) => name.endsWith('.journal'));
      expect(journals).toHaveLength(1);
      for (const name of journals) await truncate(join(dataDir, 'spool', name), 0);
    }

    second = startGatewayProcess(env);
    await second.listening();
    await expect.poll(async () => (await reader.recordings.get('acme', orphan!.id))?.status).toBe('completed');
    const row = (await reader.recordings.get('acme', orphan!.id))!;
    // Every frame counted before the kill is in, less at most the durability cadence; nothing invented.
    expect(row.durationMs!).toBeGreaterThanOrEqual(before * 20 - MAX_LOSS_MS);
    expect(row.durationMs!).toBeLessThan(10_000);
    const restarted = second;
    await expect.poll(() => restarted.find('recording recovered')).toEqual([expect.objectContaining({ recordingSid: row.recordingSid })]);
    // The segment the kill left was read at start (and deleted; the new process writes its own): after a power
    // loss it gave the journal back everything, the records the recovery above found whole.
    expect(restarted.find('journals repaired from the commit log')).toEqual([
      expect.objectContaining({ segments: 1, gaps: 0, ...(powerLoss ? { journals: 1, restored: expect.any(Number) } : {}) }),
    ]);
    if (powerLoss) expect(restarted.find('journals repaired from the commit log')[0]!['restored']).toBeGreaterThanOrEqual(10);
    // The call row is ended, the spool is gone, and no multipart upload is left open.
    expect(await reader.calls.getByExternalId('acme', callSid, 'twilio')).toMatchObject({ status: 'ended' });
    await expect.poll(async () => readdir(join(dataDir, 'spool'))).toEqual([]);
    expect((await listBucket(bucket)).multipartUploads).toBe(0);

    const client = s3Client();
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: row.objectKey }));
    const chunks: Uint8Array[] = [];
    for await (const plain of decryptStream(object.Body as AsyncIterable<Uint8Array>, (header) =>
      key ? deriveClientDataKeyFor(key, header) : unwrapDataKey(new Map([['crash-test', masterKey]]), row.keyId!, row.wrappedKey!),
    )) {
      chunks.push(Uint8Array.from(plain));
    }
    client.destroy();
    const [left, right] = splitChannels(Buffer.concat(chunks), 2) as [Int16Array, Int16Array];
    expect(left.length).toBe((row.durationMs! * 16000) / 1000);
    // The caller's tone on the left, the agent's on the right, right up to the last durable frame.
    for (const [channel, hz, other] of [
      [left, CALLER_HZ, AGENT_HZ],
      [right, AGENT_HZ, CALLER_HZ],
    ] as const) {
      const body = sliceMs(channel, 16000, 100, row.durationMs! - 100);
      expect(toneAmplitude(body, 16000, hz)).toBeGreaterThan(AMPLITUDE * 32767 * 0.9);
      expect(toneAmplitude(body, 16000, other)).toBeLessThan(AMPLITUDE * 32767 * 0.05);
    }
  } finally {
    await first.kill('SIGKILL');
    await second?.kill('SIGKILL');
    await reader.close();
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
});
