import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CallvaultError, ErrorCode } from '../errors/index.js';

export interface S3ClientOptions {
  /** Omitted for AWS itself; set for MinIO, s3rver and other S3-compatible stores. */
  endpoint?: string;
  region: string;
  forcePathStyle?: boolean;
  /** Omitted: the SDK's default chain (env, shared config, instance or task role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export function createS3Client(opts: S3ClientOptions): S3Client {
  return new S3Client({
    region: opts.region,
    // An S3 that hangs must fail the request so the upload is retried from the spool, instead of waiting forever:
    // connecting is bounded, and so is a socket that stops moving (idle time, not a cap on a long part upload).
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.forcePathStyle !== undefined ? { forcePathStyle: opts.forcePathStyle } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
  });
}

/** Creates the bucket unless it already exists (also when another node creates it concurrently). */
export async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return;
  } catch (err) {
    if (!isNotFound(err)) throw storageError(`cannot reach bucket "${bucket}"`, err, bucket);
  }
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if (errorName(err) === 'BucketAlreadyOwnedByYou') return;
    throw storageError(`cannot create bucket "${bucket}"`, err, bucket);
  }
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NotFound' || name === 'NoSuchBucket' || httpStatus(err) === 404;
}

function storageError(message: string, cause: unknown, bucket: string): CallvaultError {
  return new CallvaultError(ErrorCode.StorageUnavailable, message, {
    cause,
    retryable: isTransientS3Error(cause),
    details: { bucket, s3Error: errorName(cause), status: httpStatus(cause) },
  });
}

export function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

export function httpStatus(err: unknown): number | undefined {
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return meta?.httpStatusCode;
}

const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
]);
const TRANSIENT_S3_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'ThrottlingException',
]);

/** Network failures and server-side (5xx, throttling) errors may succeed on retry; 4xx will not. */
export function isTransientS3Error(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const status = httpStatus(e);
    if (status !== undefined) return status >= 500 || status === 429;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT_NETWORK_CODES.has(code)) return true;
    const name = errorName(e);
    if (name && TRANSIENT_S3_NAMES.has(name)) return true;
  }
  return false;
}
