/**
 * Streaming a large recording: a slow reader must not make the gateway pull the object from storage ahead
 * of it, an aborting reader stops the storage read, and both leave the gateway serving everyone else.
 * A counting proxy between the gateway and MinIO shows how far the gateway has read the object.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { s3Peer } from '../support/peers.js';
import { wavHeader } from '../../dist/audio/wav.js';
import { CountingProxy, api, apiKeyOf, recordingPath, sha256, storeRecording, type StoredRecording } from './support.js';

// Far larger than every socket buffer between MinIO, the proxy, the gateway and the client put together.
const PCM_BYTES = 64 * 1024 * 1024;

let t: TestGateway;
let proxy: CountingProxy;
let big: StoredRecording;

beforeAll(async () => {
  const peer = s3Peer();
  proxy = await CountingProxy.start(peer.endpoint);
  t = await startTestGateway({
    s3: {
      endpoint: proxy.endpoint,
      region: peer.region,
      forcePathStyle: true,
      credentials: { accessKeyId: peer.accessKeyId, secretAccessKey: peer.secretAccessKey },
      bucket: `cv-stream-${randomBytes(6).toString('hex')}`,
      partSizeBytes: 5 * 1024 * 1024,
      maxInflightParts: 4,
    },
  });
  t.bucket = t.gateway.options.s3.bucket;
  big = await storeRecording(t, { pcm: randomBytes(PCM_BYTES), sampleRate: 48000, channels: 2 });
}, 120_000);

afterAll(async () => {
  await t?.dispose();
  await proxy?.close();
});

/** A raw HTTP/1.1 client whose reading the test controls, on a socket the test can pause. */
function rawGet(path: string, authorization: string) {
  const socket = connect(t.gateway.port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${authorization}\r\nConnection: close\r\n\r\n`);
  let head = Buffer.alloc(0);
  let headers: string | null = null;
  let bodyBytes = 0;
  const hash = createHash('sha256');
  const waiters: Array<{ bytes: number; resolve: () => void }> = [];
  const ended = new Promise<void>((resolve, reject) => {
    socket.on('end', () => resolve());
    socket.on('error', reject);
  });
  socket.on('data', (chunk: Buffer) => {
    let body = chunk;
    if (headers === null) {
      head = Buffer.concat([head, chunk]);
      const split = head.indexOf('\r\n\r\n');
      if (split < 0) return;
      headers = head.subarray(0, split).toString('latin1');
      body = head.subarray(split + 4);
    }
    bodyBytes += body.length;
    hash.update(body);
    for (const waiter of [...waiters]) {
      if (bodyBytes >= waiter.bytes) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  });
  return {
    socket,
    get headers() {
      return headers;
    },
    get bodyBytes() {
      return bodyBytes;
    },
    received(bytes: number): Promise<void> {
      if (bodyBytes >= bytes) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ bytes, resolve }));
    },
    async finish(): Promise<{ headers: string; bodyBytes: number; sha256: string }> {
      await ended;
      return { headers: headers ?? '', bodyBytes, sha256: hash.digest('hex') };
    },
  };
}

describe('a slow client', () => {
  test('is fed at its own pace: the gateway reads storage only as far as the client has taken, and the file arrives intact', async () => {
    const before = proxy.downstreamBytes;
    const client = rawGet(recordingPath(big.callSid), `Bearer ${apiKeyOf(t, 'acme')}`);
    await client.received(256 * 1024);
    client.socket.pause();
    const pulledWhilePaused = (await proxy.settled()) - before;
    const heldByClient = client.bodyBytes;
    // Only socket buffers' worth beyond what the client took; buffering the recording would pull all 64 MiB.
    expect(pulledWhilePaused).toBeLessThan(big.objectSize / 2);
    expect(pulledWhilePaused).toBeGreaterThanOrEqual(heldByClient);

    // A little more, then pause again: still bounded, and storage moved on with the client.
    client.socket.resume();
    await client.received(heldByClient + 8 * 1024 * 1024);
    client.socket.pause();
    const pulledSecondPause = (await proxy.settled()) - before;
    expect(pulledSecondPause - client.bodyBytes).toBeLessThan(big.objectSize / 2);
    expect(pulledSecondPause).toBeGreaterThan(pulledWhilePaused);

    client.socket.resume();
    const result = await client.finish();
    expect(result.headers).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(result.bodyBytes).toBe(big.wav.length);
    expect(result.sha256).toBe(sha256(big.wav));
  });
});

describe('an aborting client', () => {
  test('stops the storage read, and the gateway keeps serving others', async () => {
    const before = proxy.downstreamBytes;
    const controller = new AbortController();
    const res = await api(t, recordingPath(big.callSid), { signal: controller.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let received = 0;
    while (received < 1024 * 1024) received += (await reader.read()).value?.length ?? 0;
    controller.abort();
    await reader.cancel().catch(() => undefined);
    const pulled = (await proxy.settled()) - before;
    expect(pulled).toBeLessThan(big.objectSize / 2);
    expect(t.logs.find('recording stream failed')).toEqual([]);

    const range = await api(t, recordingPath(big.callSid), { headers: { range: 'bytes=1000000-2999999' } });
    expect(range.status).toBe(206);
    expect(sha256(new Uint8Array(await range.arrayBuffer()))).toBe(sha256(big.wav.subarray(1_000_000, 3_000_000)));
  });

  test('a client that vanishes mid-stream while others download does not disturb them', async () => {
    const slow = rawGet(recordingPath(big.callSid), `Bearer ${apiKeyOf(t, 'acme')}`);
    await slow.received(64 * 1024);
    const full = api(t, recordingPath(big.callSid)).then(async (r) => sha256(new Uint8Array(await r.arrayBuffer())));
    slow.socket.destroy();
    expect(await full).toBe(sha256(big.wav));
  });
});

describe('one track (?track=)', () => {
  /** The mono WAV of one channel of `big`, as the API must serve it. */
  function trackWav(channel: 0 | 1): Uint8Array {
    const pcm = big.wav.subarray(44);
    const mono = Buffer.alloc(pcm.length / 2);
    for (let f = 0; f < pcm.length / 4; f++) {
      mono[2 * f] = pcm[4 * f + 2 * channel]!;
      mono[2 * f + 1] = pcm[4 * f + 2 * channel + 1]!;
    }
    return Buffer.concat([wavHeader({ sampleRate: 48000, channels: 1, dataBytes: mono.length }), mono]);
  }

  test('a slow client of a track is fed at its own pace (storage read only as far as it has taken), and the track arrives intact', async () => {
    const expected = trackWav(1);
    const before = proxy.downstreamBytes;
    const client = rawGet(recordingPath(big.callSid, '?track=bot'), `Bearer ${apiKeyOf(t, 'acme')}`);
    await client.received(256 * 1024);
    client.socket.pause();
    const pulledWhilePaused = (await proxy.settled()) - before;
    // Deinterleaved while streaming: buffering the recording would pull all 64 MiB before the client took 256 KiB.
    expect(pulledWhilePaused).toBeLessThan(big.objectSize / 2);
    client.socket.resume();
    const result = await client.finish();
    expect(result.headers).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(result.bodyBytes).toBe(expected.length);
    expect(result.sha256).toBe(sha256(expected));
  });

  test('a Range near the end of a track reads only the segments holding those frames', async () => {
    const expected = trackWav(0);
    const start = expected.length - 100_001;
    const before = await proxy.settled(200);
    const res = await api(t, recordingPath(big.callSid, '?track=caller'), { headers: { range: `bytes=${start}-` } });
    expect(res.status).toBe(206);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(Buffer.from(body).equals(Buffer.from(expected.subarray(start)))).toBe(true);
    // ~200 KB of stereo frames (13 segments of 16 KiB) plus the header read and HTTP framing: far below the 64 MiB object.
    expect((await proxy.settled(200)) - before).toBeLessThan(1024 * 1024);
  });
});

describe('storage unavailable', () => {
  test('GET and DELETE answer 503 STORAGE_UNAVAILABLE and nothing is lost', async () => {
    const small = await storeRecording(t, { pcm: randomBytes(100_000) });
    proxy.refuse();
    try {
      const get = await api(t, recordingPath(small.callSid));
      expect(get.status).toBe(503);
      expect(await get.json()).toMatchObject({ error: { code: 'STORAGE_UNAVAILABLE' } });
      const del = await api(t, recordingPath(small.callSid), { method: 'DELETE' });
      expect(del.status).toBe(503);
      expect(await del.json()).toMatchObject({ error: { code: 'STORAGE_UNAVAILABLE' } });
    } finally {
      proxy.accept();
    }
    // The failed deletion kept the metadata, so the recording is still whole and a retry can delete it.
    const again = await api(t, recordingPath(small.callSid));
    expect(again.status).toBe(200);
    expect(sha256(new Uint8Array(await again.arrayBuffer()))).toBe(sha256(small.wav));
    expect((await api(t, recordingPath(small.callSid), { method: 'DELETE' })).status).toBe(204);
  });
});
