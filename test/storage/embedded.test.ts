import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  PartLimiter,
  Spool,
  createS3Client,
  ensureBucket,
  startEmbeddedS3,
  startSpoolUpload,
} from '../../dist/storage/index.js';
import { startEmbeddedPostgres } from '../../dist/db/embedded.js';

const MiB = 1024 * 1024;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cv-embedded-test-'));
  // Under root, PostgreSQL runs as the `postgres` user, which must traverse into the temp dir.
  await chmod(root, 0o711);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('embedded S3 (s3rver)', () => {
  test('takes a multipart upload from the spool and returns the same bytes after a restart', async () => {
    const dir = join(root, 's3');
    let s3 = await startEmbeddedS3({ dir });
    const clientFor = (endpoint: string) =>
      createS3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      });
    let client = clientFor(s3.endpoint);
    const data = Buffer.alloc(11 * MiB);
    for (let i = 0; i < data.length; i += 32) createHash('sha256').update(String(i)).digest().copy(data, i);
    try {
      await ensureBucket(client, 'recordings');
      await ensureBucket(client, 'recordings');
      const file = await new Spool(join(root, 'spool')).create('s3rver-rec', {});
      const parts: number[] = [];
      const upload = startSpoolUpload({
        client,
        bucket: 'recordings',
        key: 'a/b.cvr',
        spoolFile: file,
        partSize: 5 * MiB,
        limiter: new PartLimiter(1),
        onPartUploaded: (info) => parts.push(info.bytes),
      });
      for (let i = 0; i < data.length; i += MiB) await file.append(data.subarray(i, i + MiB));
      await file.seal();
      expect((await upload.done).size).toBe(data.length);
      expect(parts).toEqual([5 * MiB, 5 * MiB, MiB]);

      client.destroy();
      await s3.stop();
      s3 = await startEmbeddedS3({ dir });
      client = clientFor(s3.endpoint);
      const res = await client.send(new GetObjectCommand({ Bucket: 'recordings', Key: 'a/b.cvr' }));
      expect(Buffer.from(await res.Body!.transformToByteArray()).equals(data)).toBe(true);
    } finally {
      client.destroy();
      await s3.stop();
    }
  });
});

describe('embedded PostgreSQL', () => {
  test('initialises once, creates the callvault database, and keeps data and password across restarts', async () => {
    const dataDir = join(root, 'pg');
    const first = await startEmbeddedPostgres({ dataDir, port: 0 });
    try {
      expect(new URL(first.url).pathname).toBe('/callvault');
      expect(new URL(first.url).hostname).toBe('127.0.0.1');
      const c = new pg.Client({ connectionString: first.url });
      await c.connect();
      await c.query('CREATE TABLE kept (v text)');
      await c.query(`INSERT INTO kept VALUES ('still here')`);
      await c.end();
    } finally {
      await first.stop();
    }
    const passwordFile = join(dataDir, 'password');
    expect((await stat(passwordFile)).mode & 0o777).toBe(0o600);
    const password = (await readFile(passwordFile, 'utf8')).trim();
    expect(password).toMatch(/^[0-9a-f]{48}$/);

    const second = await startEmbeddedPostgres({ dataDir, port: 0 });
    try {
      expect(decodeURIComponent(new URL(second.url).password)).toBe(password);
      const c = new pg.Client({ connectionString: second.url });
      await c.connect();
      const { rows } = await c.query('SELECT v FROM kept');
      await c.end();
      expect(rows).toEqual([{ v: 'still here' }]);

      const wrong = new URL(second.url);
      wrong.password = 'not-the-password';
      const intruder = new pg.Client({ connectionString: wrong.toString() });
      await expect(intruder.connect()).rejects.toThrow(/password authentication failed/);
    } finally {
      await second.stop();
      await second.stop();
    }
  });
});
