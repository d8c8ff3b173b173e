import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  createEncryptor,
  encryptChunk,
  decryptRecordingToWav,
  deriveClientDataKey,
  generateDataKey,
  generateSalt,
  type KeyMode,
} from '../../dist/crypto/index.js';
import { parseWav, wavHeader } from '../../dist/audio/wav.js';
import { bytesFrom, chunked, concat, errorCode, flipBit, tonePcm, toneShare } from './fixtures.js';

const CLIENT_KEY = Buffer.from(bytesFrom('wav-client-key', 32)).toString('base64');

/** Encrypts PCM the way the live pipeline does: in ~100 ms batches, final batch flagged. */
function record(pcm: Uint8Array, opts: { sampleRate: number; channels: 1 | 2; keyMode: KeyMode; dataKey?: Uint8Array; batchBytes: number }) {
  const salt = generateSalt();
  const dataKey = opts.dataKey ?? (opts.keyMode === 'client' ? deriveClientDataKey(CLIENT_KEY, salt) : generateDataKey());
  const { header, state } = createEncryptor({
    dataKey,
    keyMode: opts.keyMode,
    keyId: opts.keyMode === 'server' ? 'mk-1' : '',
    salt,
    sampleRate: opts.sampleRate,
    channels: opts.channels,
  });
  const parts = [header];
  let current = state;
  for (let at = 0; at < pcm.length; at += opts.batchBytes) {
    const step = encryptChunk(current, pcm.subarray(at, at + opts.batchBytes), false);
    parts.push(step.output);
    current = step.state;
  }
  parts.push(encryptChunk(current, new Uint8Array(0), true).output);
  return { object: concat(...parts), dataKey };
}

let dir: string;
let server: Server;
let baseUrl: string;
const served = new Map<string, Uint8Array>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callvault-wav-'));
  // A real HTTP server stands in for a presigned S3 URL; it streams in small writes.
  server = createServer((req, res) => {
    const body = served.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    for (let at = 0; at < body.length; at += 5000) res.write(body.subarray(at, at + 5000));
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const d = join(dir, name);
  await rm(d, { recursive: true, force: true });
  await mkdir(d);
  return d;
}

describe('wavHeader / parseWav', () => {
  test.each([
    { sampleRate: 8000, channels: 1, dataBytes: 0 },
    { sampleRate: 16000, channels: 1, dataBytes: 32000 },
    { sampleRate: 48000, channels: 2, dataBytes: 192000 },
  ])('$sampleRate Hz × $channels, $dataBytes bytes', ({ sampleRate, channels, dataBytes }) => {
    const h = wavHeader({ sampleRate, channels, dataBytes });
    const v = new DataView(h.buffer);
    expect(h.length).toBe(44);
    expect(Buffer.from(h.subarray(0, 4)).toString('ascii')).toBe('RIFF');
    expect(v.getUint32(4, true)).toBe(36 + dataBytes);
    expect(Buffer.from(h.subarray(8, 16)).toString('ascii')).toBe('WAVEfmt ');
    expect(v.getUint32(16, true)).toBe(16);
    expect(v.getUint16(20, true)).toBe(1);
    expect(v.getUint16(22, true)).toBe(channels);
    expect(v.getUint32(24, true)).toBe(sampleRate);
    expect(v.getUint32(28, true)).toBe(sampleRate * channels * 2);
    expect(v.getUint16(32, true)).toBe(channels * 2);
    expect(v.getUint16(34, true)).toBe(16);
    expect(Buffer.from(h.subarray(36, 40)).toString('ascii')).toBe('data');
    expect(v.getUint32(40, true)).toBe(dataBytes);

    const pcm = tonePcm(sampleRate, channels === 1 ? [440] : [440, 880], dataBytes / (2 * channels));
    const parsed = parseWav(concat(h, pcm));
    expect(parsed).toMatchObject({ sampleRate, channels, bitsPerSample: 16 });
    expect(Buffer.from(parsed.data).equals(Buffer.from(pcm))).toBe(true);
    expect(parsed.samples.length).toBe(dataBytes / 2);
  });

  test('skips LIST and odd-sized chunks before data', () => {
    const pcm = tonePcm(8000, [1000], 800);
    const canonical = wavHeader({ sampleRate: 8000, channels: 1, dataBytes: pcm.length });
    const chunk = (id: string, body: Uint8Array) => {
      const head = new Uint8Array(8);
      head.set(Buffer.from(id, 'ascii'));
      new DataView(head.buffer).setUint32(4, body.length, true);
      return concat(head, body, body.length % 2 ? new Uint8Array(1) : new Uint8Array(0));
    };
    const list = chunk('LIST', Buffer.from('INFOISFT\x05\x00\x00\x00call\x00', 'latin1'));
    const odd = chunk('junk', new Uint8Array(3));
    const file = concat(canonical.subarray(0, 36), list, odd, canonical.subarray(36), pcm);
    const parsed = parseWav(file);
    expect(parsed.sampleRate).toBe(8000);
    expect(Buffer.from(parsed.data).equals(Buffer.from(pcm))).toBe(true);
    expect(toneShare(parsed.samples, 1, 0, 8000, 1000)).toBeGreaterThan(0.95);
  });

  test.each([
    { name: 'not RIFF', bytes: bytesFrom('x', 100) },
    { name: 'no data chunk', bytes: wavHeader({ sampleRate: 8000, channels: 1, dataBytes: 0 }).subarray(0, 36) },
    { name: 'data past the end', bytes: wavHeader({ sampleRate: 8000, channels: 1, dataBytes: 10 }) },
  ])('parseWav rejects $name', async ({ bytes }) => {
    expect(await errorCode(() => parseWav(bytes))).toBe('BAD_REQUEST');
  });
});

describe('decryptRecordingToWav', () => {
  test.each([
    { name: 'client key, mono 16 kHz, file', sampleRate: 16000, tones: [440], seconds: 1.5, keyMode: 'client' as const, via: 'file' },
    { name: 'client key, stereo 8 kHz, http URL', sampleRate: 8000, tones: [300, 1200], seconds: 2, keyMode: 'client' as const, via: 'url' },
    { name: 'data key, stereo 48 kHz, stream', sampleRate: 48000, tones: [1000, 3000], seconds: 0.75, keyMode: 'server' as const, via: 'stream' },
    { name: 'client key, empty recording, file', sampleRate: 16000, tones: [440], seconds: 0, keyMode: 'client' as const, via: 'file' },
  ])('$name', async ({ name, sampleRate, tones, seconds, keyMode, via }) => {
    const channels = tones.length as 1 | 2;
    const frames = Math.round(sampleRate * seconds);
    const pcm = tonePcm(sampleRate, tones, frames);
    const { object, dataKey } = record(pcm, { sampleRate, channels, keyMode, batchBytes: (sampleRate / 10) * 2 * channels });
    const d = await freshDir(name.replace(/\W+/g, '-'));
    const output = join(d, 'out.wav');
    let input: string | AsyncIterable<Uint8Array>;
    if (via === 'file') {
      input = join(d, 'in.cvr');
      await writeFile(input, object);
    } else if (via === 'url') {
      served.set(`/${d.split('/').pop()}`, object);
      input = `${baseUrl}/${d.split('/').pop()}`;
    } else {
      input = chunked(object, 4093);
    }

    const result = await decryptRecordingToWav({ input, output, ...(keyMode === 'client' ? { key: CLIENT_KEY } : { dataKey }) });

    expect(result).toEqual({ sampleFormat: 'pcm_s16le', sampleRate, channels, durationSeconds: frames / sampleRate, bytes: 44 + pcm.length, dataBytes: pcm.length });
    const wav = await readFile(output);
    expect(wav.length).toBe(result.bytes);
    expect(Buffer.from(wav.subarray(0, 44)).equals(Buffer.from(wavHeader({ sampleRate, channels, dataBytes: pcm.length })))).toBe(true);
    const parsed = parseWav(wav);
    expect(parsed).toMatchObject({ sampleRate, channels, bitsPerSample: 16 });
    expect(Buffer.from(parsed.data).equals(Buffer.from(pcm))).toBe(true);
    expect(parsed.samples.length / channels / sampleRate).toBe(seconds);
    if (frames > 0) tones.forEach((f, c) => expect(toneShare(parsed.samples, channels, c, sampleRate, f)).toBeGreaterThan(0.95));
    expect((await readdir(d)).filter((f) => f !== 'in.cvr')).toEqual(['out.wav']);
  });

  const pcm = tonePcm(16000, [440], 16000);
  const good = record(pcm, { sampleRate: 16000, channels: 1, keyMode: 'client', batchBytes: 3200 }).object;
  const serverRecording = record(pcm, { sampleRate: 16000, channels: 1, keyMode: 'server', batchBytes: 3200 }).object;
  test.each([
    { name: 'bit flipped in the last segment', object: flipBit(good, good.length - 20), key: CLIENT_KEY, code: 'CONTAINER_TAMPERED' },
    { name: 'bit flipped in the first segment', object: flipBit(good, 100), key: CLIENT_KEY, code: 'CONTAINER_TAMPERED' },
    { name: 'truncated at a segment boundary', object: good.subarray(0, 60 + 16384 + 16), key: CLIENT_KEY, code: 'CONTAINER_TRUNCATED' },
    { name: 'truncated inside the header', object: good.subarray(0, 30), key: CLIENT_KEY, code: 'CONTAINER_TRUNCATED' },
    { name: 'wrong client key', object: good, key: Buffer.from(bytesFrom('other key', 32)).toString('hex'), code: 'CONTAINER_TAMPERED' },
    { name: 'weak client key', object: good, key: 'password123password123', code: 'CLIENT_KEY_WEAK' },
    { name: 'server-mode recording with a client key', object: serverRecording, key: CLIENT_KEY, code: 'KEY_UNKNOWN' },
  ])('$name → $code, and no output is left behind', async ({ name, object, key, code }) => {
    const d = await freshDir(`bad-${name.replace(/\W+/g, '-')}`);
    const input = join(d, 'in.cvr');
    await writeFile(input, object);
    const output = join(d, 'out.wav');
    expect(await errorCode(() => decryptRecordingToWav({ input, output, key }))).toBe(code);
    expect(await readdir(d)).toEqual(['in.cvr']);
  });

  test.each([
    { name: 'mp3, whole', tamper: false },
    { name: 'mp3, tampered', tamper: true },
  ])('$name: the MPEG bytes are written exactly as stored, no WAV header; a damaged one leaves nothing', async ({ name, tamper }) => {
    const salt = generateSalt();
    const mp3 = bytesFrom('opaque mpeg audio', 20000);
    const { header, state } = createEncryptor({
      dataKey: deriveClientDataKey(CLIENT_KEY, salt),
      keyMode: 'client',
      keyId: '',
      salt,
      sampleRate: 44100,
      channels: 1,
      sampleFormat: 'mp3',
    });
    const object = concat(header, encryptChunk(state, mp3, true).output);
    const d = await freshDir(name.replace(/\W+/g, '-'));
    const output = join(d, 'out.mp3');
    if (tamper) {
      expect(await errorCode(() => decryptRecordingToWav({ input: chunked(flipBit(object, object.length - 1), 999), output, key: CLIENT_KEY }))).toBe('CONTAINER_TAMPERED');
      expect(await readdir(d)).toEqual([]);
      return;
    }
    const result = await decryptRecordingToWav({ input: chunked(object, 999), output, key: CLIENT_KEY });
    expect(result).toEqual({ sampleFormat: 'mp3', sampleRate: 44100, channels: 1, durationSeconds: 0, bytes: mp3.length, dataBytes: mp3.length });
    expect(Buffer.from(await readFile(output)).equals(Buffer.from(mp3))).toBe(true);
  });

  test('a failed decryption leaves an existing output file untouched', async () => {
    const d = await freshDir('keep-existing');
    const output = join(d, 'out.wav');
    await writeFile(output, 'previous');
    const code = await errorCode(() => decryptRecordingToWav({ input: chunked(flipBit(good, good.length - 1), 1000), output, key: CLIENT_KEY }));
    expect(code).toBe('CONTAINER_TAMPERED');
    expect(await readFile(output, 'utf8')).toBe('previous');
    expect(await readdir(d)).toEqual(['out.wav']);
  });

  test.each([
    { name: 'missing file', input: () => join(dir, 'does-not-exist.cvr'), opts: { key: CLIENT_KEY }, code: 'NOT_FOUND' },
    { name: 'URL answering 404', input: () => `${baseUrl}/missing`, opts: { key: CLIENT_KEY }, code: 'NOT_FOUND' },
    { name: 'neither key nor data key', input: () => join(dir, 'x'), opts: {}, code: 'BAD_REQUEST' },
    { name: 'both key and data key', input: () => join(dir, 'x'), opts: { key: CLIENT_KEY, dataKey: generateDataKey() }, code: 'BAD_REQUEST' },
  ])('$name → $code', async ({ name, input, opts, code }) => {
    const d = await freshDir(`err-${name.replace(/\W+/g, '-')}`);
    expect(await errorCode(() => decryptRecordingToWav({ input: input(), output: join(d, 'out.wav'), ...opts }))).toBe(code);
    expect(await readdir(d)).toEqual([]);
  });
});
