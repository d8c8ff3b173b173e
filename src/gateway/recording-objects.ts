/**
 * A stored recording's bytes, wherever they are: the S3 object (ranges, size, a presigned URL), the spool
 * file this gateway still holds (live, or uploading), its data key, and removing all of it. The API serves
 * and deletes recordings through this, without knowing S3, the spool's layout or the keyring.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';
import { unwrapDataKey } from '../crypto/index.js';
import type { Recording as RecordingRow } from '../db/index.js';
import { abortOpenUploads } from './durable-sink.js';
import { deleteCheckpoints } from './checkpoint.js';
import type { RecordingServices } from './services.js';

/** An open spool data file: one handle for a whole response (the file is removed once the upload completes). */
export type CiphertextFile = FileHandle;

export interface RecordingObjects {
  /** The object's size in bytes (the row's, or asked of S3 when the row does not know it yet). */
  objectSize(row: RecordingRow, signal: AbortSignal): Promise<number>;
  /** Bytes `start`..`endInclusive` of the stored (encrypted) object. */
  openObjectRange(row: RecordingRow, start: number, endInclusive: number, signal: AbortSignal): Promise<Readable>;
  /** The recording's spool data file on this gateway, or null when it holds none (finished, or another instance). */
  openSpoolFile(row: RecordingRow): Promise<CiphertextFile | null>;
  /** A URL to the encrypted object, valid for `ttlSeconds` (client key mode: the gateway cannot decrypt). */
  presignedUrl(row: RecordingRow, ttlSeconds: number): Promise<string>;
  /** The recording's data key, unwrapped under the master keyring (server key mode). */
  dataKey(row: RecordingRow): Uint8Array;
  /**
   * Leaves nothing of the recording in storage: its open multipart upload aborted by the UploadId its row
   * keeps (no ListMultipartUploads, which not every S3 endpoint implements), the object, its spool files.
   */
  purge(row: RecordingRow): Promise<void>;
}

/** NOT_FOUND for a missing object, STORAGE_UNAVAILABLE (retryable) for anything else S3 answered. */
export function storageError(err: unknown, what: string): CallvaultError {
  if (isCallvaultError(err)) return err;
  const name = err instanceof Error ? err.name : '';
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new CallvaultError(ErrorCode.NotFound, 'recording object is gone', { cause: err });
  }
  return new CallvaultError(ErrorCode.StorageUnavailable, `object storage failed to ${what}`, { cause: err, retryable: true });
}

export function recordingObjects(services: RecordingServices): RecordingObjects {
  const { s3, spool } = services;
  return {
    async objectSize(row, signal) {
      if (row.sizeBytes !== null) return row.sizeBytes;
      const head = await s3.send(new HeadObjectCommand({ Bucket: row.bucket, Key: row.objectKey }), { abortSignal: signal }).catch((err: unknown) => {
        throw storageError(err, 'describe the recording');
      });
      return Number(head.ContentLength);
    },

    async openObjectRange(row, start, endInclusive, signal) {
      try {
        const object = await s3.send(new GetObjectCommand({ Bucket: row.bucket, Key: row.objectKey, Range: `bytes=${start}-${endInclusive}` }), {
          abortSignal: signal,
        });
        return object.Body as Readable;
      } catch (err) {
        throw storageError(err, 'read the recording');
      }
    },

    openSpoolFile: (row) => spool.openData(row.id),

    presignedUrl: (row, ttlSeconds) =>
      getSignedUrl(s3, new GetObjectCommand({ Bucket: row.bucket, Key: row.objectKey }), {
        expiresIn: ttlSeconds,
        // The injected clock signs, so the URL's lifetime follows the gateway's notion of now.
        signingDate: new Date(services.now()),
      }),

    dataKey(row) {
      if (!row.keyId || !row.wrappedKey) {
        throw new CallvaultError(ErrorCode.KeyUnknown, 'recording has no wrapped data key', { details: { recordingSid: row.recordingSid } });
      }
      return unwrapDataKey(services.keyring.all, row.keyId, row.wrappedKey);
    },

    async purge(row) {
      try {
        const abortError = await abortOpenUploads(services, row.id, row.bucket, row.objectKey);
        if (abortError) throw abortError;
        // Deleting a missing key succeeds, so concurrent deletions all get here without error.
        await s3.send(new DeleteObjectCommand({ Bucket: row.bucket, Key: row.objectKey }));
      } catch (err) {
        throw storageError(err, 'delete the recording');
      }
      await spool.removeFiles(row.id);
      if (row.checkpointedAt) await deleteCheckpoints(services, row.bucket, row.id);
    },
  };
}
