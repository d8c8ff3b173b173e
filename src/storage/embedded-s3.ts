/**
 * An in-process S3 (s3rver) so `npm start` works with no S3_ENDPOINT.
 *
 * DEVELOPMENT ONLY: s3rver accepts any SigV4 signature without checking it (it only knows the
 * fixed access key S3RVER), so anyone who can reach the port can read and write every object.
 * It listens on 127.0.0.1 only for that reason; production uses a real S3 or MinIO.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import S3rver from 's3rver';
import { CallvaultError, ErrorCode } from '../errors/index.js';

export interface EmbeddedS3Options {
  /** Where objects are stored; persists across restarts. */
  dir: string;
  /** Default 0: a free port. */
  port?: number;
}

export interface EmbeddedS3 {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

// The only credentials s3rver knows; they authenticate nothing (see above).
const S3RVER_KEY = 'S3RVER';

export async function startEmbeddedS3(opts: EmbeddedS3Options): Promise<EmbeddedS3> {
  const directory = resolve(opts.dir);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const server = new S3rver({ address: '127.0.0.1', port: opts.port ?? 0, directory, silent: true });
  let port: number;
  try {
    ({ port } = await server.run());
  } catch (err) {
    throw new CallvaultError(ErrorCode.StorageUnavailable, 'embedded S3 did not start', {
      cause: err,
      details: { port: opts.port ?? 0 },
    });
  }
  let stopping: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    accessKeyId: S3RVER_KEY,
    secretAccessKey: S3RVER_KEY,
    stop() {
      stopping ??= server.close();
      return stopping;
    },
  };
}
