/**
 * Access to the real test peers started by test/peers/global-setup.ts.
 * Each test file gets its own database and bucket so files never see each other's rows or objects.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';

export interface S3PeerInfo {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests through vitest so test/peers/global-setup.ts starts the peers`);
  return value;
}

/** A URL to the PostgreSQL server where tests may create databases (admin rights). */
export function postgresAdminUrl(): string {
  return requireEnv('CALLVAULT_TEST_DATABASE_URL');
}

export function s3Peer(): S3PeerInfo {
  return {
    endpoint: requireEnv('CALLVAULT_TEST_S3_ENDPOINT'),
    region: 'us-east-1',
    accessKeyId: requireEnv('CALLVAULT_TEST_S3_ACCESS_KEY_ID'),
    secretAccessKey: requireEnv('CALLVAULT_TEST_S3_SECRET_ACCESS_KEY'),
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Creates an empty database on the test server; `drop()` removes it. */
export async function freshDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const admin = postgresAdminUrl();
  const name = uniqueName('cv_test').replace(/-/g, '_');
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export function s3Client(): S3Client {
  const peer = s3Peer();
  return new S3Client({
    endpoint: peer.endpoint,
    region: peer.region,
    forcePathStyle: true,
    credentials: { accessKeyId: peer.accessKeyId, secretAccessKey: peer.secretAccessKey },
  });
}

/** Creates an empty bucket on the MinIO peer. */
export async function freshBucket(): Promise<string> {
  const bucket = uniqueName('cv-test');
  const client = s3Client();
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}
