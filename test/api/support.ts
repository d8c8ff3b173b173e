/**
 * Helpers for the API tests: authenticated requests, calls placed with the simulator, recordings stored
 * directly (for sizes a simulated call would take too long to produce), and a byte-counting TCP proxy in
 * front of MinIO that shows how much the gateway pulls from storage.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { expect } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createEncryptor, encryptChunk, generateDataKey, generateSalt, wrapDataKey } from '../../dist/crypto/index.js';
import { parseWav, WAV_HEADER_LENGTH, wavHeader } from '../../dist/audio/wav.js';
import type { TestGateway } from '../support/gateway.js';
import { s3Client } from '../support/peers.js';
import { splitChannels } from '../support/audio.js';

export const CALLER_HZ = 440;
export const AGENT_HZ = 1000;
export const TONE_AMPLITUDE = 0.4;

export function apiKeyOf(t: TestGateway, org: string): string {
  const entry = t.gateway.options.apiKeys.find((k) => k.org === org);
  if (!entry) throw new Error(`no API key for ${org}`);
  return entry.key;
}

export function api(
  t: TestGateway,
  path: string,
  init: { org?: string; method?: string; headers?: Record<string, string>; authorization?: string | null; redirect?: RequestRedirect; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...(init.headers ?? {}) };
  const authorization = init.authorization === undefined ? `Bearer ${apiKeyOf(t, init.org ?? 'acme')}` : init.authorization;
  if (authorization !== null) headers['authorization'] = authorization;
  return fetch(`${t.httpUrl}${path}`, {
    method: init.method ?? 'GET',
    headers,
    redirect: init.redirect ?? 'manual',
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

export function recordingPath(callSid: string, query = ''): string {
  return `/calls/${encodeURIComponent(callSid)}/recording${query}`;
}

export { placeCall } from '../support/twilio.js';

export interface DecodedWav {
  sampleRate: number;
  channels: number;
  dataBytes: number;
  channelSamples: Int16Array[];
}

export function decodeWav(bytes: Uint8Array): DecodedWav {
  const wav = parseWav(bytes);
  const data = Uint8Array.from(wav.data);
  return { sampleRate: wav.sampleRate, channels: wav.channels, dataBytes: wav.data.length, channelSamples: splitChannels(data, wav.channels) };
}

/** The samples of [fromMs, toMs) of one channel. */
export function window(samples: Int16Array, rate: number, fromMs: number, toMs: number): Int16Array {
  return samples.subarray(Math.round((fromMs * rate) / 1000), Math.round((toMs * rate) / 1000));
}

/** Polls until `probe` returns a value (not undefined); for waiting on state another component changes. */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The in-progress recording row of a call, once the gateway created it. */
export async function inProgressRecording(t: TestGateway, org: string, callSid: string) {
  return until(async () => {
    const page = await t.gateway.db.recordings.list(org, { callSid, status: 'in_progress', page: 0, limit: 1 });
    return page.rows[0];
  }, `an in-progress recording of ${callSid}`);
}

export async function spoolFilesOf(t: TestGateway, recordingId: string): Promise<string[]> {
  const names = await readdir(join(t.dataDir, 'spool')).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(recordingId));
}

export interface StoredRecording {
  callSid: string;
  recordingId: string;
  objectKey: string;
  /** The WAV the API must serve: canonical header + plaintext. */
  wav: Uint8Array;
  objectSize: number;
}

/**
 * Writes a completed server-key recording of arbitrary PCM straight to MinIO and PostgreSQL, exactly as the
 * gateway lays them out, so tests can serve recordings far longer than a simulated call could produce quickly.
 */
export async function storeRecording(
  t: TestGateway,
  opts: { org?: string; pcm: Uint8Array; sampleRate?: number; channels?: 1 | 2; segmentSize?: number },
): Promise<StoredRecording> {
  const org = opts.org ?? 'acme';
  const sampleRate = opts.sampleRate ?? 16000;
  const channels = opts.channels ?? 2;
  const keyring = t.gateway.options.keyring;
  const dataKey = generateDataKey();
  const salt = generateSalt();
  const { header, state } = createEncryptor({
    dataKey,
    keyMode: 'server',
    keyId: keyring.currentId,
    salt,
    sampleRate,
    channels,
    ...(opts.segmentSize ? { segmentSize: opts.segmentSize } : {}),
  });
  const { output } = encryptChunk(state, opts.pcm, true);
  const object = Buffer.concat([header, output]);
  const callSid = `CA${randomBytes(16).toString('hex')}`;
  const objectKey = `${org}/stored/${callSid}/${randomUUID()}.cvr`;
  const client = s3Client();
  try {
    await client.send(new PutObjectCommand({ Bucket: t.bucket, Key: objectKey, Body: object, ContentLength: object.length }));
  } finally {
    client.destroy();
  }
  const db = t.gateway.db;
  const call = await db.calls.upsertActive({ orgId: org, source: 'twilio', externalId: callSid, startedAt: new Date() });
  const row = await db.recordings.create({
    orgId: org,
    callId: call.id,
    source: 'gateway',
    channels,
    sampleRate,
    format: 'cvr1',
    mediaType: 'application/vnd.callvault.recording',
    bucket: t.bucket,
    objectKey,
    keyMode: 'server',
    keyId: keyring.currentId,
    wrappedKey: wrapDataKey(keyring.current, keyring.currentId, dataKey),
    startedAt: new Date(),
  });
  const durationMs = Math.round((opts.pcm.length / (2 * channels) / sampleRate) * 1000);
  await db.recordings.complete(row.id, { durationMs, sizeBytes: object.length, endedAt: new Date() });
  const wav = Buffer.concat([wavHeader({ sampleRate, channels, dataBytes: opts.pcm.length }), opts.pcm]);
  expect(wav.length).toBe(WAV_HEADER_LENGTH + opts.pcm.length);
  return { callSid, recordingId: row.id, objectKey, wav, objectSize: object.length };
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * A TCP proxy in front of MinIO counting the bytes storage sends back, so a test can see how far the gateway
 * has read an object. `refuse()` makes storage unreachable (connections are reset) until `accept()`.
 */
export class CountingProxy {
  downstreamBytes = 0;
  #server: Server;
  #sockets = new Set<Socket>();
  #refusing = false;
  port = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(target: string): Promise<CountingProxy> {
    const url = new URL(target);
    const server = createServer();
    const proxy = new CountingProxy(server);
    server.on('connection', (client) => {
      if (proxy.#refusing) {
        client.resetAndDestroy();
        return;
      }
      const upstream = connect(Number(url.port), url.hostname);
      proxy.#sockets.add(client);
      proxy.#sockets.add(upstream);
      upstream.on('data', (chunk: Buffer) => {
        proxy.downstreamBytes += chunk.length;
      });
      client.pipe(upstream);
      upstream.pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
        proxy.#sockets.delete(client);
        proxy.#sockets.delete(upstream);
      };
      client.on('error', close);
      upstream.on('error', close);
      client.on('close', close);
      upstream.on('close', close);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    proxy.port = (server.address() as { port: number }).port;
    return proxy;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  refuse(): void {
    this.#refusing = true;
    for (const socket of this.#sockets) socket.resetAndDestroy();
    this.#sockets.clear();
  }

  accept(): void {
    this.#refusing = false;
  }

  /** Waits until no byte has flowed for `quietMs`, then returns the count: how far the reader got. */
  async settled(quietMs = 500): Promise<number> {
    let last = -1;
    let quietSince = Date.now();
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (this.downstreamBytes !== last) {
        last = this.downstreamBytes;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= quietMs) {
        return last;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('storage traffic never settled');
  }

  async close(): Promise<void> {
    this.refuse();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
