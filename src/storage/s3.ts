import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CallvaultError, ErrorCode } from '../errors/index.js';

export interface S3ClientOptions {
  /** Omitted for AWS itself; set for MinIO, s3rver and other S3-compatible stores. */
  endpoint?: string;
  region: string;
  forcePathStyle?: boolean;
  /** Omitted: the SDK's default chain (env, shared config, instance or task role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** A connection not established within this long fails the request. Default 5000 (S3_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number;
  /**
   * A request whose socket has sent and received nothing for this long fails. Idle time, not a cap on the
   * whole request: a long part upload that keeps moving is never cut. Default 60 000 (S3_REQUEST_TIMEOUT_MS).
   */
  requestTimeoutMs?: number;
}

export const DEFAULT_S3_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_S3_REQUEST_TIMEOUT_MS = 60_000;

export function createS3Client(opts: S3ClientOptions): S3Client {
  return new S3Client({
    region: opts.region,
    // An S3 that hangs must fail the request so the upload is retried from the spool, instead of waiting forever:
    // connecting is bounded, and so is a socket that stops moving. In @smithy/node-http-handler 4.x that idle
    // bound is `socketTimeout`; its `requestTimeout` is a whole-request timer that only logs a warning unless
    // `throwOnRequestTimeout` is set, so a hanging S3 would never fail with it (and a slow but moving part
    // upload would be cut if it did throw). Above 6 s the handler arms the idle timer 3 s after the request starts.
    requestHandler: {
      connectionTimeout: opts.connectTimeoutMs ?? DEFAULT_S3_CONNECT_TIMEOUT_MS,
      socketTimeout: opts.requestTimeoutMs ?? DEFAULT_S3_REQUEST_TIMEOUT_MS,
    },
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
