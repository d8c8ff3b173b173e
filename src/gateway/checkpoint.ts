/**
 * Spool checkpoints to S3 (SPOOL_CHECKPOINT_SECONDS): what a peer needs to finish a recording whose gateway's
 * volume is lost for good.
 *
 * Every interval a live recording uploads, as small objects under `checkpoints/<recordingId>/`:
 *   - `manifest.json` once (the spool manifest: bucket, object key, container parameters and the data key
 *     wrapped under the master key — never the key itself);
 *   - `<seq>.journal-part` (seq: 8 digits from 00000000): the frame journal's bytes written since the previous
 *     part, whole records exactly as in the journal file, so sealed under the data key (journal.ts) — no
 *     plaintext reaches S3. Concatenated in order they are a prefix of the journal.
 * An interval with no new records uploads nothing. A failed upload is logged and counted and retried at the next
 * interval (with everything since the last part that made it); it never fails the recording.
 *
 * The objects go when the recording completes (or fails), and with the recording (DELETE, retention). A peer
 * that finds an `interrupted` recording with checkpoints whose owner has been dead for the takeover period
 * takes its ownership with a compare-and-set, downloads the objects into its own spool and finishes it through
 * start-up recovery's path (replay → container → upload → completed): lost is at most the last interval.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import type { JournalWriter } from '../storage/index.js';
import { isRecoverableManifest, type RecordingManifest } from './envelope.js';
import type { RecordingServices } from './services.js';

const MANIFEST_OBJECT = 'manifest.json';
const PART_SUFFIX = '.journal-part';

export function checkpointPrefix(recordingId: string): string {
  return `checkpoints/${recordingId}/`;
}

function partKey(recordingId: string, seq: number): string {
  return `${checkpointPrefix(recordingId)}${String(seq).padStart(8, '0')}${PART_SUFFIX}`;
}

/** Checkpoints one live recording; `tick(now)` is called by the recording's periodic flush. */
export class SpoolCheckpointer {
  readonly #services: RecordingServices;
  readonly #manifest: RecordingManifest;
  readonly #journal: JournalWriter;
  readonly #intervalMs: number;
  #nextAt: number;
  #manifestUploaded = false;
  #offset = 0;
  #seq = 0;
  #running: Promise<void> | null = null;
  #stopped = false;
  #keys: string[] = [];

  constructor(services: RecordingServices, manifest: RecordingManifest, journal: JournalWriter, intervalMs: number) {
    this.#services = services;
    this.#manifest = manifest;
    this.#journal = journal;
    this.#intervalMs = intervalMs;
    this.#nextAt = services.now() + intervalMs;
  }

  tick(now: number): void {
    if (this.#stopped || this.#running || now < this.#nextAt) return;
    this.#nextAt = now + this.#intervalMs;
    this.#running = this.checkpoint().finally(() => {
      this.#running = null;
    });
  }

  /** One checkpoint now; never rejects (a failure is logged and counted). */
  async checkpoint(): Promise<void> {
    const { s3, metrics, logger, db } = this.#services;
    const id = this.#manifest.recordingId;
    try {
      const sealed = await this.#journal.sealedSince(this.#offset);
      if (!sealed || sealed.bytes.length === 0 || this.#stopped) return;
      if (!this.#manifestUploaded) {
        const key = checkpointPrefix(id) + MANIFEST_OBJECT;
        metrics.spoolCheckpointRequests.inc({ op: 'put' });
        await s3.send(new PutObjectCommand({ Bucket: this.#manifest.bucket, Key: key, Body: JSON.stringify(this.#manifest), ContentType: 'application/json' }));
        this.#keys.push(key);
        this.#manifestUploaded = true;
      }
      const key = partKey(id, this.#seq);
      metrics.spoolCheckpointRequests.inc({ op: 'put' });
      await s3.send(new PutObjectCommand({ Bucket: this.#manifest.bucket, Key: key, Body: sealed.bytes, ContentType: 'application/octet-stream' }));
      this.#keys.push(key);
      if (this.#seq === 0) await db.recordings.markCheckpointed(id);
      this.#seq++;
      this.#offset = sealed.end;
      metrics.spoolCheckpoints.inc({ outcome: 'uploaded' });
      logger.debug({ recordingId: id, seq: this.#seq - 1, bytes: sealed.bytes.length, frames: sealed.frames }, 'spool checkpoint uploaded');
    } catch (err) {
      metrics.spoolCheckpoints.inc({ outcome: 'failed' });
      const error = toCallvaultError(err, ErrorCode.StorageUnavailable);
      logger.warn({ recordingId: id, code: error.code, err: error }, 'spool checkpoint failed');
    }
  }

  /** No more checkpoints (the recording ended, one way or another); waits for one under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }

  /** Stops and deletes every checkpoint object this recording wrote (it completed or failed here). Never rejects. */
  async discard(): Promise<void> {
    await this.stop();
    if (this.#keys.length === 0) return;
    const keys = this.#keys;
    this.#keys = [];
    await deleteKeys(this.#services, this.#manifest.bucket, this.#manifest.recordingId, keys);
  }
}

async function deleteKeys(services: RecordingServices, bucket: string, recordingId: string, keys: readonly string[]): Promise<void> {
  try {
    for (const key of keys) {
      services.metrics.spoolCheckpointRequests.inc({ op: 'delete' });
      await services.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    }
    services.logger.debug({ recordingId, objects: keys.length }, 'spool checkpoints deleted');
  } catch (err) {
    const error = toCallvaultError(err, ErrorCode.StorageUnavailable);
    services.logger.warn({ recordingId, code: error.code, err: error }, 'could not delete spool checkpoints');
  }
}

async function listKeys(services: RecordingServices, bucket: string, recordingId: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    services.metrics.spoolCheckpointRequests.inc({ op: 'list' });
    const page = await services.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: checkpointPrefix(recordingId), ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/**
 * Deletes whatever checkpoint objects a recording has in S3, whoever wrote them (recovery finished it, DELETE,
 * retention). Never rejects: what is left is logged (an S3 lifecycle rule on `checkpoints/` catches strays).
 */
export async function deleteCheckpoints(services: RecordingServices, bucket: string, recordingId: string): Promise<void> {
  try {
    const keys = await listKeys(services, bucket, recordingId);
    if (keys.length > 0) await deleteKeys(services, bucket, recordingId, keys);
  } catch (err) {
    const error = toCallvaultError(err, ErrorCode.StorageUnavailable);
    services.logger.warn({ recordingId, code: error.code, err: error }, 'could not delete spool checkpoints');
  }
}

async function getObject(services: RecordingServices, bucket: string, key: string): Promise<Buffer> {
  services.metrics.spoolCheckpointRequests.inc({ op: 'get' });
  const object = await services.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!object.Body) throw new CallvaultError(ErrorCode.StorageUnavailable, 'checkpoint object has no body', { retryable: true });
  return Buffer.from(await object.Body.transformToByteArray());
}

/** Writes `path` whole or not at all, on stable storage before it is renamed into place (0600). */
async function writeFileAtomically(path: string, data: Buffer | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const handle = await open(`${path}.tmp`, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(`${path}.tmp`, path);
}

/**
 * Downloads a recording's checkpoints into this gateway's spool: the journal (the parts in order), an empty
 * data file and, last, the manifest (so a start-up never sees half a download as a spool entry).
 */
export async function downloadCheckpoints(services: RecordingServices, bucket: string, recordingId: string): Promise<RecordingManifest | null> {
  const keys = await listKeys(services, bucket, recordingId);
  const manifestKey = checkpointPrefix(recordingId) + MANIFEST_OBJECT;
  const parts = keys.filter((k) => k.endsWith(PART_SUFFIX));
  if (!keys.includes(manifestKey) || parts.length === 0) return null;
  const manifest: unknown = JSON.parse((await getObject(services, bucket, manifestKey)).toString('utf8'));
  if (typeof manifest !== 'object' || manifest === null || !isRecoverableManifest(manifest as Record<string, unknown>)) {
    throw new CallvaultError(ErrorCode.SpoolFailed, 'checkpoint manifest is not a recoverable manifest', { details: { recordingId } });
  }
  const chunks: Buffer[] = [];
  for (const key of parts) chunks.push(await getObject(services, bucket, key));
  const spool = services.spool;
  await writeFileAtomically(spool.journalPath(recordingId), Buffer.concat(chunks));
  await writeFileAtomically(spool.dataPath(recordingId), Buffer.alloc(0));
  await writeFileAtomically(spool.manifestPath(recordingId), JSON.stringify(manifest));
  return manifest as RecordingManifest;
}
