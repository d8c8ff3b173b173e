/**
 * A real gateway for end-to-end tests: real uWS on port 0, real worker threads, a fresh PostgreSQL
 * database and a fresh MinIO bucket of its own.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Gateway } from '../../dist/gateway/gateway.js';
import { startGateway } from '../../dist/bootstrap/wiring.js';
import type { GatewayOptions } from '../../dist/gateway/options.js';
import { createLogger } from '../../dist/log/index.js';
import { decryptStream, deriveClientDataKeyFor, unwrapDataKey } from '../../dist/crypto/index.js';
import type { Recording as RecordingRow } from '../../dist/db/index.js';
import { freshBucket, freshDatabase, s3Client, s3Peer } from './peers.js';
import { splitChannels } from './audio.js';

export const PUBLIC_URL = 'https://rec.example.test';

export interface TestAccount {
  org: string;
  accountSid: string;
  authToken: string;
}

export function testAccount(org: string): TestAccount {
  return { org, accountSid: `AC${randomBytes(16).toString('hex')}`, authToken: randomBytes(16).toString('hex') };
}

/** Log lines the gateway wrote, parsed, so tests can assert on structured logs. */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
  find(msg: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l['msg'] === msg);
  }
}

export interface TestGateway {
  gateway: Gateway;
  bucket: string;
  accounts: TestAccount[];
  logs: LogCapture;
  wsUrl: string;
  httpUrl: string;
  dataDir: string;
  databaseUrl: string;
  dispose(): Promise<void>;
}

/**
 * `s3` is merged over the test defaults (MinIO, a fresh bucket): pass only what differs, e.g. an endpoint
 * behind a fault proxy and short timeouts (`connectTimeoutMs`, `requestTimeoutMs`).
 */
export async function startTestGateway(
  overrides: Partial<Omit<GatewayOptions, 'logger' | 's3'>> & { accounts?: TestAccount[]; s3?: Partial<GatewayOptions['s3']> } = {},
): Promise<TestGateway> {
  const db = await freshDatabase();
  const bucket = await freshBucket();
  const dataDir = await mkdtemp(join(tmpdir(), 'callvault-gw-'));
  const peer = s3Peer();
  const accounts = overrides.accounts ?? [testAccount('acme'), testAccount('globex')];
  const logs = new LogCapture();
  const masterKey = randomBytes(32);
  const { accounts: _a, s3: s3Overrides, ...rest } = overrides;
  const options: GatewayOptions = {
    host: '127.0.0.1',
    port: 0,
    publicUrl: PUBLIC_URL,
    dataDir,
    databaseUrl: db.url,
    s3: {
      endpoint: peer.endpoint,
      region: peer.region,
      forcePathStyle: true,
      credentials: { accessKeyId: peer.accessKeyId, secretAccessKey: peer.secretAccessKey },
      bucket,
      partSizeBytes: 5 * 1024 * 1024,
      maxInflightParts: 4,
      ...s3Overrides,
    },
    keyring: { currentId: 'test-key-1', current: masterKey, all: new Map([['test-key-1', masterKey]]) },
    twilio: { accounts, validateSignatures: true, maxAheadOfClockMs: 10_000 },
    apiKeys: accounts.map((a) => ({ org: a.org, key: `${a.org}-api-key-${randomBytes(12).toString('hex')}` })),
    recording: { sampleRate: 16000, defaults: { enabled: true, stereo: true } },
    workerThreads: 2,
    shutdownDeadlineMs: 20_000,
    presignedUrlTtlSeconds: 300,
    logger: createLogger({ level: 'debug', destination: logs }),
    ...rest,
  };
  const gateway = await startGateway(options);
  return {
    gateway,
    bucket: options.s3.bucket,
    accounts,
    logs,
    wsUrl: `ws://127.0.0.1:${gateway.port}/twilio/media`,
    httpUrl: `http://127.0.0.1:${gateway.port}`,
    dataDir,
    databaseUrl: db.url,
    async dispose() {
      await gateway.close();
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface DecodedRecording {
  row: RecordingRow;
  sampleRate: number;
  channels: number;
  /** One Int16Array per channel. */
  channelSamples: Int16Array[];
  objectSize: number;
}

async function* bodyChunks(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) yield chunk;
}

/**
 * Reads the recording's object straight from MinIO and decrypts it with the documented format:
 * server mode unwraps the data key from the row with the gateway's keyring, client mode derives it.
 */
export async function fetchRecording(t: TestGateway, row: RecordingRow, clientKey?: string): Promise<DecodedRecording> {
  const client = s3Client();
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: t.bucket, Key: row.objectKey }));
    const chunks: Uint8Array[] = [];
    let header: { sampleRate: number; channels: number } | undefined;
    for await (const plain of decryptStream(bodyChunks(object.Body as AsyncIterable<Uint8Array>), (h) => {
      header = h;
      if (h.keyMode === 'client') return deriveClientDataKeyFor(clientKey ?? '', h);
      return unwrapDataKey(t.gateway.options.keyring.all, row.keyId ?? '', row.wrappedKey ?? new Uint8Array());
    })) {
      chunks.push(Uint8Array.from(plain));
    }
    const pcm = Buffer.concat(chunks);
    if (!header) throw new Error('no header');
    return {
      row,
      sampleRate: header.sampleRate,
      channels: header.channels,
      channelSamples: splitChannels(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength), header.channels),
      objectSize: Number(object.ContentLength),
    };
  } finally {
    client.destroy();
  }
}

export async function listBucket(bucket: string): Promise<{ objects: string[]; multipartUploads: number }> {
  const client = s3Client();
  try {
    const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return { objects: (objects.Contents ?? []).map((o) => o.Key ?? ''), multipartUploads: (uploads.Uploads ?? []).length };
  } finally {
    client.destroy();
  }
}

/** The recordings of a call, newest first, straight from the gateway's database. */
export async function recordingsOfCall(t: TestGateway, org: string, callSid: string): Promise<RecordingRow[]> {
  const page = await t.gateway.db.recordings.list(org, { callSid, page: 0, limit: 100 });
  return page.rows;
}
