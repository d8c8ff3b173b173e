import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  PartLimiter,
  Spool,
  createS3Client,
  ensureBucket,
  startSpoolUpload,
  type PartUploadedInfo,
  type SpoolFile,
} from '../../dist/storage/index.js';
import { freshBucket, s3Peer, uniqueName } from '../support/peers.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;

let client: S3Client;
let bucket: string;
let root: string;
let spool: Spool;

beforeAll(async () => {
  const peer = s3Peer();
  client = createS3Client({
    endpoint: peer.endpoint,
    region: peer.region,
    forcePathStyle: true,
    credentials: { accessKeyId: peer.accessKeyId, secretAccessKey: peer.secretAccessKey },
  });
  bucket = await freshBucket();
  root = await mkdtemp(join(tmpdir(), 'cv-upload-test-'));
  spool = new Spool(join(root, 'spool'));
});

afterAll(async () => {
  client?.destroy();
  if (root) await rm(root, { recursive: true, force: true });
});

/** Deterministic, non-repeating content so a misplaced or duplicated part changes the bytes. */
function content(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

async function appendInChunks(file: SpoolFile, data: Buffer, from: number, to: number, chunk = 20_000): Promise<void> {
  for (let offset = from; offset < to; offset += chunk) {
    await file.append(data.subarray(offset, Math.min(offset + chunk, to)));
  }
}

async function getObject(key: string): Promise<Buffer> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

async function objectExists(b: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: b, Key: key }));
    return true;
  } catch (err) {
    if ((err as Error).name === 'NotFound') return false;
    throw err;
  }
}

async function openMultipartUploads(b: string, key: string): Promise<number> {
  const res = await client.send(new ListMultipartUploadsCommand({ Bucket: b, Prefix: key }));
  return res.Uploads?.length ?? 0;
}

/** Resolves when onPartUploaded reported `partNumber`. */
function partWatcher() {
  const seen: PartUploadedInfo[] = [];
  const waiters = new Map<number, () => void>();
  return {
    seen,
    onPartUploaded(info: PartUploadedInfo) {
      seen.push(info);
      waiters.get(info.partNumber)?.();
    },
    uploaded(partNumber: number): Promise<void> {
      if (seen.some((p) => p.partNumber === partNumber)) return Promise.resolve();
      return new Promise((resolve) => waiters.set(partNumber, resolve));
    },
  };
}

describe('startSpoolUpload against MinIO', () => {
  test('a 12 MiB recording appended in small chunks streams while live; the object appears only after seal', async () => {
    const data = content(12 * MiB, 'live');
    const file = await spool.create(uniqueName('live'), { kind: 'live' });
    const key = `recordings/${file.recordingId}.cvr`;
    const parts = partWatcher();
    const limiter = new PartLimiter(4);
    const upload = startSpoolUpload({
      client,
      bucket,
      key,
      spoolFile: file,
      partSize: PART,
      limiter,
      onPartUploaded: parts.onPartUploaded,
    });

    // Enough for two whole parts (plus the byte that lets lib-storage cut the second).
    await appendInChunks(file, data, 0, 2 * PART + 1);
    await parts.uploaded(2);
    expect(parts.seen.map((p) => [p.partNumber, p.bytes])).toEqual([
      [1, PART],
      [2, PART],
    ]);
    expect(file.sealed).toBe(false);
    expect(await objectExists(bucket, key)).toBe(false);
    expect(await openMultipartUploads(bucket, key)).toBe(1);

    await appendInChunks(file, data, 2 * PART + 1, data.length);
    await file.seal();
    const result = await upload.done;

    expect(result.size).toBe(data.length);
    expect(result.etag).toMatch(/-3"$/);
    expect(parts.seen.map((p) => [p.partNumber, p.bytes])).toEqual([
      [1, PART],
      [2, PART],
      [3, 2 * MiB],
    ]);
    const stored = await getObject(key);
    expect(stored.length).toBe(data.length);
    expect(stored.equals(await readFile(file.path))).toBe(true);
    expect(stored.equals(data)).toBe(true);
    expect(await openMultipartUploads(bucket, key)).toBe(0);
    expect(limiter.inFlight).toBe(0);
    expect(limiter.highWater).toBeGreaterThanOrEqual(1);
  });

  test.each([
    { name: 'empty', size: 0, parts: [0] },
    { name: 'one byte', size: 1, parts: [1] },
    { name: '100 kB', size: 100_000, parts: [100_000] },
    { name: 'exactly one part', size: PART, parts: [PART] },
    { name: 'one part and one byte', size: PART + 1, parts: [PART, 1] },
  ])('a $name recording uploads with the right part split', async ({ size, parts: expectedParts }) => {
    const data = content(size, `small-${size}`);
    const file = await spool.create(uniqueName('small'), {});
    const key = `recordings/${file.recordingId}.cvr`;
    const parts = partWatcher();
    const upload = startSpoolUpload({
      client,
      bucket,
      key,
      spoolFile: file,
      partSize: PART,
      limiter: new PartLimiter(2),
      contentType: 'application/vnd.callvault.recording',
      metadata: { 'recording-sid': 'RE123' },
      onPartUploaded: parts.onPartUploaded,
    });
    await appendInChunks(file, data, 0, size, 64 * 1024);
    await file.seal();
    const result = await upload.done;

    expect(result.size).toBe(size);
    expect(parts.seen.map((p) => p.bytes)).toEqual(expectedParts);
    expect((await getObject(key)).equals(data)).toBe(true);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ContentType).toBe('application/vnd.callvault.recording');
    expect(head.Metadata).toEqual({ 'recording-sid': 'RE123' });
  });

  test.each([1, 2])('three concurrent uploads share a limiter of %i and all complete', async (max) => {
    const limiter = new PartLimiter(max);
    let inFlightAtReport = 0;
    let waitingSeen = 0;
    const recordings = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const data = content(11 * MiB + i * 1000, `concurrent-${max}-${i}`);
        const file = await spool.create(uniqueName(`concurrent-${i}`), {});
        return { data, file, key: `recordings/${file.recordingId}.cvr` };
      }),
    );
    const uploads = recordings.map(({ file, key }) =>
      startSpoolUpload({
        client,
        bucket,
        key,
        spoolFile: file,
        partSize: PART,
        limiter,
        onPartUploaded: () => {
          inFlightAtReport = Math.max(inFlightAtReport, limiter.inFlight);
          waitingSeen = Math.max(waitingSeen, limiter.waiting);
        },
      }),
    );
    // All three calls produce audio at once; uploads run while they are appended.
    await Promise.all(recordings.map(({ file, data }) => appendInChunks(file, data, 0, data.length, 256 * 1024)));
    await Promise.all(recordings.map(({ file }) => file.seal()));
    const results = await Promise.all(uploads.map((u) => u.done));

    expect(limiter.highWater).toBeLessThanOrEqual(max);
    expect(limiter.highWater).toBeGreaterThanOrEqual(1);
    expect(inFlightAtReport).toBeLessThanOrEqual(max);
    if (max === 1) expect(waitingSeen).toBeGreaterThanOrEqual(1);
    expect(limiter.inFlight).toBe(0);
    expect(limiter.waiting).toBe(0);
    for (const [i, { data, key }] of recordings.entries()) {
      expect(results[i]!.size).toBe(data.length);
      expect((await getObject(key)).equals(data)).toBe(true);
    }
  });

  test.each([
    { name: 'single PUT', size: 10_000 },
    { name: 'multipart', size: 6 * MiB },
  ])('a missing bucket rejects with UPLOAD_FAILED ($name) and keeps the spool', async ({ size }) => {
    const missing = uniqueName('cv-missing');
    const data = content(size, 'missing');
    const file = await spool.create(uniqueName('missing'), {});
    const limiter = new PartLimiter(1);
    const upload = startSpoolUpload({ client, bucket: missing, key: 'k', spoolFile: file, partSize: PART, limiter });
    await appendInChunks(file, data, 0, size, 256 * 1024);
    await file.seal();

    const err = await upload.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ name: 'CallvaultError', code: 'UPLOAD_FAILED', retryable: false });
    expect((await readFile(file.path)).equals(data)).toBe(true);
    expect(limiter.inFlight).toBe(0);
  });

  test.each([
    { name: 'abort() after a part was uploaded', via: 'method', before: PART + 1000 },
    { name: 'an AbortSignal after a part was uploaded', via: 'signal', before: PART + 1000 },
    { name: 'abort() while waiting for the first part', via: 'method', before: 1000 },
  ])('$name leaves no multipart upload and no object', async ({ via, before }) => {
    const data = content(before, 'abort');
    const file = await spool.create(uniqueName('abort'), {});
    const key = `recordings/${file.recordingId}.cvr`;
    const parts = partWatcher();
    const limiter = new PartLimiter(1);
    const controller = new AbortController();
    const upload = startSpoolUpload({
      client,
      bucket,
      key,
      spoolFile: file,
      partSize: PART,
      limiter,
      signal: controller.signal,
      onPartUploaded: parts.onPartUploaded,
    });
    await appendInChunks(file, data, 0, before, 256 * 1024);
    if (before > PART) {
      await parts.uploaded(1);
      expect(await openMultipartUploads(bucket, key)).toBe(1);
    }

    const reason = new Error('caller hung up');
    if (via === 'signal') controller.abort(reason);
    else upload.abort(reason);
    const err = await upload.done.then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(err).toMatchObject({ code: 'UPLOAD_FAILED', retryable: false });
    expect((err as Error).cause).toBe(reason);
    expect(await openMultipartUploads(bucket, key)).toBe(0);
    expect(await objectExists(bucket, key)).toBe(false);
    expect(limiter.inFlight).toBe(0);
    // The spool stays the record of truth and still accepts audio.
    expect(file.size).toBe(before);
    await file.append(Buffer.from([1, 2, 3]));
    expect((await readFile(file.path)).length).toBe(before + 3);
  });

  test('part size below the S3 minimum is refused before anything is sent', async () => {
    const file = await spool.create(uniqueName('tiny-part'), {});
    expect(() =>
      startSpoolUpload({ client, bucket, key: 'k', spoolFile: file, partSize: MiB, limiter: new PartLimiter(1) }),
    ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  test('ensureBucket creates a missing bucket and tolerates an existing one', async () => {
    const name = uniqueName('cv-ensure');
    expect(await bucketExists(name)).toBe(false);
    await ensureBucket(client, name);
    await ensureBucket(client, name);
    expect(await bucketExists(name)).toBe(true);
  });
});

async function bucketExists(name: string): Promise<boolean> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: name }));
    return true;
  } catch (err) {
    if ((err as Error).name === 'NotFound') return false;
    throw err;
  }
}
