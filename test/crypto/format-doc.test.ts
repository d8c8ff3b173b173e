/**
 * Keeps docs/recording-format.md true: its worked example must match what the code produces, and a
 * decryptor written only from the document (below, using nothing but node:crypto) must read it.
 */
import { createDecipheriv, createHash, createHmac, scryptSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { decryptRecordingToWav, decryptStream, deriveClientDataKey, derivePassphraseDataKey, encryptChunk, parseHeader, plaintextSize } from '../../dist/crypto/index.js';
import { createEncryptorWithNoncePrefix, segmentNonce } from '../../dist/crypto/container.js';
import { chunked, collect, concat } from './fixtures.js';

const DOC = fileURLToPath(new URL('../../docs/recording-format.md', import.meta.url));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha256 = (s: string | Uint8Array) => createHash('sha256').update(s).digest();

/** The lines every worked example gives of its object: the header, its three 16-byte segments, its digest and length. */
function objectLines(header: Uint8Array, output: Uint8Array): Array<[string, string]> {
  return [
    ['header', hex(header)],
    ['segment 0', hex(output.subarray(0, 32))],
    ['segment 1', hex(output.subarray(32, 64))],
    ['segment 2', hex(output.subarray(64))],
    ['object sha256', hex(sha256(concat(header, output)))],
    ['object length', String(header.length + output.length)],
  ];
}

async function documentedVector(name = 'test-vector'): Promise<Map<string, string>> {
  const doc = await readFile(DOC, 'utf8');
  const block = new RegExp(`<!-- ${name}:begin -->\\s*\`\`\`\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`).exec(doc);
  if (!block) throw new Error('worked example block not found in docs/recording-format.md');
  const entries = block[1]!
    .trim()
    .split('\n')
    .map((line) => {
      const i = line.indexOf(':');
      return [line.slice(0, i).trim(), line.slice(i + 1).trim()] as [string, string];
    });
  return new Map(entries);
}

/** The example exactly as the document describes its inputs, produced by the implementation. */
function generatedVector(): Map<string, string> {
  const clientKey = sha256('callvault test vector: client key').toString('base64url');
  const salt = sha256('callvault test vector: salt');
  const noncePrefix = sha256('callvault test vector: nonce prefix').subarray(0, 7);
  const plaintext = Uint8Array.from({ length: 40 }, (_, i) => i);
  const dataKey = deriveClientDataKey(clientKey, salt);
  const { header, state } = createEncryptorWithNoncePrefix(
    { dataKey, keyMode: 'client', keyId: 'demo', salt, sampleRate: 8000, channels: 1, segmentSize: 16 },
    noncePrefix,
  );
  const { output } = encryptChunk(state, plaintext, true);
  return new Map([
    ['client key', clientKey],
    ['salt', hex(salt)],
    ['nonce prefix', hex(noncePrefix)],
    ['plaintext', hex(plaintext)],
    ['data key', hex(dataKey)],
    ['header', hex(header)],
    ['nonce 0', hex(segmentNonce(noncePrefix, 0, false))],
    ['segment 0', hex(output.subarray(0, 32))],
    ['nonce 1', hex(segmentNonce(noncePrefix, 1, false))],
    ['segment 1', hex(output.subarray(32, 64))],
    ['nonce 2', hex(segmentNonce(noncePrefix, 2, true))],
    ['segment 2', hex(output.subarray(64))],
    ['object sha256', hex(sha256(concat(header, output)))],
    ['object length', String(header.length + output.length)],
  ]);
}

/** A decryptor written from the document alone. */
function decryptFromDocument(object: Uint8Array, clientKeyBase64url: string): { sampleRate: number; channels: number; plaintext: Uint8Array } {
  const magic = Buffer.from('8943565245430d0a', 'hex');
  expect(Buffer.from(object.subarray(0, 8)).equals(magic)).toBe(true);
  expect(object[8]).toBe(1);
  expect(object[9]).toBe(1);
  const view = new DataView(object.buffer, object.byteOffset, object.byteLength);
  const channels = object[10]!;
  const sampleRate = view.getUint32(11, false);
  const keyMode = object[15];
  const S = view.getUint32(16, false);
  const noncePrefix = object.subarray(20, 27);
  const salt = object.subarray(27, 59);
  const H = 60 + object[59]!;
  const header = object.subarray(0, H);
  expect(keyMode).toBe(2);

  // HKDF-SHA256 per RFC 5869, info "callvault/v1/client-data-key".
  const ikm = Buffer.from(clientKeyBase64url, 'base64url');
  const prk = createHmac('sha256', salt).update(ikm).digest();
  const key = createHmac('sha256', prk).update('callvault/v1/client-data-key').update(Uint8Array.of(1)).digest();

  const parts: Uint8Array[] = [];
  let offset = H;
  for (let i = 0; ; i++) {
    const remaining = object.length - offset;
    const final = remaining <= S + 16;
    const sealed = object.subarray(offset, offset + (final ? remaining : S + 16));
    const nonce = Buffer.alloc(12);
    Buffer.from(noncePrefix).copy(nonce, 0);
    nonce.writeUInt32BE(i, 7);
    nonce[11] = final ? 1 : 0;
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(header);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    parts.push(d.update(sealed.subarray(0, sealed.length - 16)), d.final());
    offset += sealed.length;
    if (final) break;
  }
  return { sampleRate, channels, plaintext: concat(...parts) };
}

describe('docs/recording-format.md worked example', () => {
  test('matches what the implementation produces today', async () => {
    expect(Object.fromEntries(await documentedVector())).toEqual(Object.fromEntries(generatedVector()));
  });

  test('decrypts with a decryptor written from the document alone', async () => {
    const v = await documentedVector();
    const object = Buffer.from(v.get('header')! + v.get('segment 0')! + v.get('segment 1')! + v.get('segment 2')!, 'hex');
    expect(object.length).toBe(Number(v.get('object length')));
    expect(hex(sha256(object))).toBe(v.get('object sha256'));
    const out = decryptFromDocument(object, v.get('client key')!);
    expect(out).toEqual({ sampleRate: 8000, channels: 1, plaintext: new Uint8Array(Buffer.from(v.get('plaintext')!, 'hex')) });
  });

  test('decrypts with the library, and the size arithmetic in the document holds', async () => {
    const v = await documentedVector();
    const object = new Uint8Array(Buffer.from(v.get('header')! + v.get('segment 0')! + v.get('segment 1')! + v.get('segment 2')!, 'hex'));
    const { header, headerLength } = parseHeader(object);
    expect(headerLength).toBe(64);
    expect(header).toMatchObject({ keyMode: 'client', keyId: 'demo', sampleRate: 8000, channels: 1, segmentSize: 16 });
    expect(plaintextSize(header, headerLength, object.length)).toBe(40);
    const plain = await collect(decryptStream(chunked(object, 10), (h) => deriveClientDataKey(v.get('client key')!, h.salt)));
    expect(hex(plain)).toBe(v.get('plaintext'));
  });
});

describe('docs/recording-format.md worked example: a passphrase (key mode 03)', () => {
  const salt = sha256('callvault test vector: salt');
  const noncePrefix = sha256('callvault test vector: nonce prefix').subarray(0, 7);
  const plaintext = Uint8Array.from({ length: 40 }, (_, i) => i);

  test('matches what the implementation produces today', async () => {
    const scrypt = { log2N: 15, r: 8, p: 1 };
    const dataKey = await derivePassphraseDataKey('per-instance-key', salt, scrypt);
    const { header, state } = createEncryptorWithNoncePrefix(
      { dataKey, keyMode: 'client', keyId: 'demo', salt, sampleRate: 8000, channels: 1, segmentSize: 16, scrypt },
      noncePrefix,
    );
    const { output } = encryptChunk(state, plaintext, true);
    const generated = new Map([
      ['passphrase', 'per-instance-key'],
      ['scrypt', 'N = 32768 (log2N 15), r = 8, p = 1'],
      ['data key', hex(dataKey)],
      ...objectLines(header, output),
    ]);
    expect(Object.fromEntries(await documentedVector('passphrase-vector'))).toEqual(Object.fromEntries(generated));
  });

  test('decrypts with a decryptor written from the document alone (Node scrypt, AES-256-GCM)', async () => {
    const v = await documentedVector('passphrase-vector');
    const object = Buffer.from(v.get('header')! + v.get('segment 0')! + v.get('segment 1')! + v.get('segment 2')!, 'hex');
    expect(object.length).toBe(Number(v.get('object length')));
    expect(object[15]).toBe(3);
    const L = object[59]!;
    const H = 65 + L;
    const log2N = object[60 + L]!;
    const r = object.readUInt16BE(61 + L);
    const p = object.readUInt16BE(63 + L);
    const key = scryptSync(Buffer.from(v.get('passphrase')!, 'utf8'), object.subarray(27, 59), 32, { N: 2 ** log2N, r, p, maxmem: 64 * 1024 * 1024 });
    expect(hex(key)).toBe(v.get('data key'));
    const header = object.subarray(0, H);
    const parts: Uint8Array[] = [];
    for (let i = 0, offset = H; offset < object.length; i++) {
      const final = object.length - offset <= 32;
      const sealed = object.subarray(offset, final ? object.length : offset + 32);
      const nonce = Buffer.concat([object.subarray(20, 27), Buffer.alloc(5)]);
      nonce.writeUInt32BE(i, 7);
      nonce[11] = final ? 1 : 0;
      const d = createDecipheriv('aes-256-gcm', key, nonce);
      d.setAAD(header);
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      parts.push(d.update(sealed.subarray(0, sealed.length - 16)), d.final());
      offset += sealed.length;
    }
    expect(hex(concat(...parts))).toBe(hex(plaintext));
  });

  test('callvault decrypt --key <passphrase> (the library behind it) reads it', async () => {
    const v = await documentedVector('passphrase-vector');
    const dir = await mkdtemp(join(tmpdir(), 'cv-passphrase-'));
    try {
      const input = join(dir, 'example.cvr');
      await writeFile(input, Buffer.from(v.get('header')! + v.get('segment 0')! + v.get('segment 1')! + v.get('segment 2')!, 'hex'));
      const result = await decryptRecordingToWav({ input, output: join(dir, 'example.wav'), key: v.get('passphrase')! });
      expect(result).toMatchObject({ sampleRate: 8000, channels: 1 });
      const wav = await readFile(join(dir, 'example.wav'));
      expect(hex(wav.subarray(44))).toBe(hex(plaintext));
      await expect(decryptRecordingToWav({ input, output: join(dir, 'wrong.wav'), key: 'per-instance-kez' })).rejects.toMatchObject({ code: 'CONTAINER_TAMPERED' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('docs/recording-format.md worked example: a document (version 2, content type application/json)', () => {
  const clientKey = sha256('callvault test vector: client key').toString('base64url');
  const salt = sha256('callvault test vector: salt');
  const noncePrefix = sha256('callvault test vector: nonce prefix').subarray(0, 7);
  const plaintext = new TextEncoder().encode('{"text":"Hello","channel":"caller"}');
  const objectOf = (v: Map<string, string>) => Buffer.from(v.get('header')! + v.get('segment 0')! + v.get('segment 1')! + v.get('segment 2')!, 'hex');

  test('matches what the implementation produces today', async () => {
    const dataKey = deriveClientDataKey(clientKey, salt);
    const { header, state } = createEncryptorWithNoncePrefix(
      { dataKey, keyMode: 'client', keyId: '', salt, sampleRate: 0, channels: 0, segmentSize: 16, contentType: 'application/json' },
      noncePrefix,
    );
    const { output } = encryptChunk(state, plaintext, true);
    const generated = new Map([
      ['client key', clientKey],
      ['plaintext', new TextDecoder().decode(plaintext)],
      ...objectLines(header, output),
    ]);
    expect(Object.fromEntries(await documentedVector('document-vector'))).toEqual(Object.fromEntries(generated));
  });

  test('decrypts with a decryptor written from the document alone: the content type after the key id, the AAD the whole header', async () => {
    const v = await documentedVector('document-vector');
    const object = objectOf(v);
    expect(object.length).toBe(Number(v.get('object length')));
    expect(hex(sha256(object))).toBe(v.get('object sha256'));
    // Version 02; sample format, channels and sample rate 0; key mode 02.
    expect([object[8], object[9], object[10], object.readUInt32BE(11), object[15]]).toEqual([2, 0, 0, 0, 2]);
    const L = object[59]!;
    const typeLength = object[60 + L]!;
    expect(object.subarray(61 + L, 61 + L + typeLength).toString('ascii')).toBe('application/json');
    const H = 61 + L + typeLength;
    const S = object.readUInt32BE(16);
    const ikm = Buffer.from(v.get('client key')!, 'base64url');
    const prk = createHmac('sha256', object.subarray(27, 59)).update(ikm).digest();
    const key = createHmac('sha256', prk).update('callvault/v1/client-data-key').update(Uint8Array.of(1)).digest();
    const header = object.subarray(0, H);
    const parts: Uint8Array[] = [];
    for (let i = 0, offset = H; offset < object.length; i++) {
      const final = object.length - offset <= S + 16;
      const sealed = object.subarray(offset, final ? object.length : offset + S + 16);
      const nonce = Buffer.concat([object.subarray(20, 27), Buffer.alloc(5)]);
      nonce.writeUInt32BE(i, 7);
      nonce[11] = final ? 1 : 0;
      const d = createDecipheriv('aes-256-gcm', key, nonce);
      d.setAAD(header);
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      parts.push(d.update(sealed.subarray(0, sealed.length - 16)), d.final());
      offset += sealed.length;
    }
    expect(new TextDecoder().decode(concat(...parts))).toBe(v.get('plaintext'));
  });

  test('the library parses it and `callvault decrypt` (decryptRecordingToWav) writes the JSON as stored; a version 1 header is unchanged', async () => {
    const v = await documentedVector('document-vector');
    const object = new Uint8Array(objectOf(v));
    const { header, headerLength } = parseHeader(object);
    expect(headerLength).toBe(77);
    expect(header).toMatchObject({ version: 2, sampleFormat: 'none', channels: 0, sampleRate: 0, keyMode: 'client', keyId: '', contentType: 'application/json', segmentSize: 16 });
    const dir = await mkdtemp(join(tmpdir(), 'cv-document-'));
    try {
      const input = join(dir, 'transcript.json.cvr');
      await writeFile(input, object);
      const result = await decryptRecordingToWav({ input, output: join(dir, 'transcript.json'), key: v.get('client key')! });
      expect(result).toMatchObject({ sampleFormat: 'none', contentType: 'application/json', bytes: plaintext.length });
      expect(await readFile(join(dir, 'transcript.json'), 'utf8')).toBe(v.get('plaintext'));
      // The header is authenticated: another content type fails every segment.
      const relabelled = Uint8Array.from(object);
      relabelled[61 + 0 + 12] = 'x'.charCodeAt(0);
      await expect(decryptRecordingToWav({ input: (async function* () { yield relabelled; })(), output: join(dir, 'bad.json'), key: v.get('client key')! })).rejects.toMatchObject({
        code: 'CONTAINER_TAMPERED',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // Recordings keep version 1: the first worked example's header parses as before, with no content type.
    const audio = await documentedVector();
    const audioHeader = parseHeader(new Uint8Array(Buffer.from(audio.get('header')!, 'hex'))).header;
    expect(audioHeader.version).toBe(1);
    expect(audioHeader.contentType).toBeUndefined();
  });
});
