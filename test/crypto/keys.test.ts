import { createHmac, randomBytes, scryptSync } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  assertClientKeyStrong,
  clientKeyKind,
  deriveClientDataKey,
  deriveClientDataKeyFor,
  deriveNewClientDataKey,
  derivePassphraseDataKey,
  DEFAULT_SCRYPT_PARAMS,
  estimateClientKeyBits,
  generateDataKey,
  generateSalt,
  unwrapDataKey,
  wrapDataKey,
  CLIENT_DATA_KEY_INFO,
  WRAPPED_KEY_LENGTH,
} from '../../dist/crypto/index.js';
import { bytesFrom, errorCode, flipBit } from './fixtures.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('data keys and salts', () => {
  test('are 32 fresh random bytes each time', () => {
    const keys = new Set(Array.from({ length: 50 }, () => hex(generateDataKey())));
    const salts = new Set(Array.from({ length: 50 }, () => hex(generateSalt())));
    expect(keys.size).toBe(50);
    expect(salts.size).toBe(50);
    for (const k of keys) expect(k.length).toBe(64);
    for (const s of salts) expect(s.length).toBe(64);
  });
});

describe('server mode: wrapping under rotating master keys', () => {
  const previous = bytesFrom('master-2023', 32);
  const current = bytesFrom('master-2024', 32);
  const keyring = new Map([
    ['mk-2023', previous],
    ['mk-2024', current],
  ]);

  test('a key wrapped under the previous master key still unwraps after rotation', () => {
    const dataKey = generateDataKey();
    const wrappedBefore = wrapDataKey(previous, 'mk-2023', dataKey);
    const wrappedAfter = wrapDataKey(current, 'mk-2024', dataKey);
    expect(wrappedBefore.length).toBe(WRAPPED_KEY_LENGTH);
    expect(hex(unwrapDataKey(keyring, 'mk-2023', wrappedBefore))).toBe(hex(dataKey));
    expect(hex(unwrapDataKey(keyring, 'mk-2024', wrappedAfter))).toBe(hex(dataKey));
  });

  test('wrapping uses a fresh nonce and never exposes the data key', () => {
    const dataKey = generateDataKey();
    const a = wrapDataKey(current, 'mk-2024', dataKey);
    const b = wrapDataKey(current, 'mk-2024', dataKey);
    expect(hex(a)).not.toBe(hex(b));
    expect(hex(a)).not.toContain(hex(dataKey));
  });

  const wrapped = wrapDataKey(current, 'mk-2024', bytesFrom('data-key', 32));
  test.each([
    { name: 'unknown key id', keyId: 'mk-2022', blob: wrapped, code: 'KEY_UNKNOWN' },
    { name: 'retired key dropped from keyring', keyId: 'mk-2021', blob: wrapped, code: 'KEY_UNKNOWN' },
    { name: 'presented under another known key id', keyId: 'mk-2023', blob: wrapped, code: 'KEY_UNWRAP_FAILED' },
    { name: 'version byte changed', keyId: 'mk-2024', blob: flipBit(wrapped, 0, 1), code: 'KEY_UNWRAP_FAILED' },
    { name: 'nonce tampered', keyId: 'mk-2024', blob: flipBit(wrapped, 5), code: 'KEY_UNWRAP_FAILED' },
    { name: 'ciphertext tampered', keyId: 'mk-2024', blob: flipBit(wrapped, 20, 6), code: 'KEY_UNWRAP_FAILED' },
    { name: 'tag tampered', keyId: 'mk-2024', blob: flipBit(wrapped, WRAPPED_KEY_LENGTH - 1, 7), code: 'KEY_UNWRAP_FAILED' },
    { name: 'truncated', keyId: 'mk-2024', blob: wrapped.subarray(0, WRAPPED_KEY_LENGTH - 1), code: 'KEY_UNWRAP_FAILED' },
    { name: 'untouched', keyId: 'mk-2024', blob: wrapped, code: 'NO_ERROR' },
  ])('$name → $code', async ({ keyId, blob, code }) => {
    expect(await errorCode(() => unwrapDataKey(keyring, keyId, blob))).toBe(code);
  });

  test('an id that matches another key only by AAD is rejected even when both master keys are equal', async () => {
    // The key id is authenticated: the same master key under two ids must not accept each other's blobs.
    const shared = bytesFrom('shared', 32);
    const ring = new Map([['a', shared], ['b', shared]]);
    const blob = wrapDataKey(shared, 'a', generateDataKey());
    expect(await errorCode(() => unwrapDataKey(ring, 'b', blob))).toBe('KEY_UNWRAP_FAILED');
  });
});

/** RFC 5869 HKDF written from the RFC with HMAC only, independent of the code under test. */
function rfc5869(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const prk = createHmac('sha256', salt).update(ikm).digest();
  const blocks: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; blocks.length * 32 < length; i++) {
    previous = createHmac('sha256', prk).update(previous).update(info).update(Uint8Array.of(i)).digest();
    blocks.push(previous);
  }
  return new Uint8Array(Buffer.concat(blocks).subarray(0, length));
}

describe('client mode: data key derivation', () => {
  test('the reference HKDF reproduces RFC 5869 test case 1', () => {
    const okm = rfc5869(
      Buffer.from('0b'.repeat(22), 'hex'),
      Buffer.from('000102030405060708090a0b0c', 'hex'),
      Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex'),
      42,
    );
    expect(hex(okm)).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  test.each([
    { name: '32 bytes as base64', material: bytesFrom('client-1', 32), encode: (b: Buffer) => b.toString('base64') },
    { name: '32 bytes as hex', material: bytesFrom('client-2', 32), encode: (b: Buffer) => b.toString('hex') },
    { name: '16 bytes as base64url', material: bytesFrom('client-3', 16), encode: (b: Buffer) => b.toString('base64url') },
    { name: '48 bytes as upper-case hex', material: bytesFrom('client-4', 48), encode: (b: Buffer) => b.toString('hex').toUpperCase() },
  ])('equals HKDF-SHA256(decoded key, salt, "$name") per RFC 5869', ({ material, encode }) => {
    const salt = bytesFrom(`salt-${hex(material)}`, 32);
    const derived = deriveClientDataKey(encode(Buffer.from(material)), salt);
    expect(hex(derived)).toBe(hex(rfc5869(material, salt, new TextEncoder().encode(CLIENT_DATA_KEY_INFO), 32)));
  });

  test('the key depends on the key material and salt, not on how the material is encoded', () => {
    const material = Buffer.from(bytesFrom('material', 32));
    const salt = bytesFrom('salt', 32);
    const viaHex = hex(deriveClientDataKey(material.toString('hex'), salt));
    expect(hex(deriveClientDataKey(material.toString('base64'), salt))).toBe(viaHex);
    expect(hex(deriveClientDataKey(material.toString('base64').replace(/=+$/, ''), salt))).toBe(viaHex);
    expect(hex(deriveClientDataKey(material.toString('base64url'), salt))).toBe(viaHex);
    expect(hex(deriveClientDataKey(material.toString('hex'), bytesFrom('other salt', 32)))).not.toBe(viaHex);
    expect(CLIENT_DATA_KEY_INFO).toBe('callvault/v1/client-data-key');
  });

  test('a passphrase: scrypt(UTF-8 passphrase, salt, N, r, p, 32) with the parameters recorded, off the event loop', async () => {
    const salt = bytesFrom('salt', 32);
    const params = { log2N: 10, r: 8, p: 1 };
    const expected = scryptSync(Buffer.from('per-instance-key', 'utf8'), salt, 32, { N: 1024, r: 8, p: 1 });
    expect(hex(await derivePassphraseDataKey('per-instance-key', salt, params))).toBe(hex(expected));
    expect(hex(await deriveClientDataKeyFor('per-instance-key', { salt, scrypt: params }))).toBe(hex(expected));
    expect(DEFAULT_SCRYPT_PARAMS).toEqual({ log2N: 15, r: 8, p: 1 });
    const fresh = await deriveNewClientDataKey('per-instance-key', salt);
    expect(fresh.scrypt).toEqual(DEFAULT_SCRYPT_PARAMS);
    expect(hex(fresh.dataKey)).toBe(hex(scryptSync(Buffer.from('per-instance-key'), salt, 32, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 })));
    // A key keeps the HKDF path, with no scrypt parameters.
    const key = randomBytes(32).toString('hex');
    expect(await deriveNewClientDataKey(key, salt)).toEqual({ dataKey: deriveClientDataKey(key, salt) });
  });

  test('scrypt at the default parameters is measured, and runs on the thread pool: the event loop keeps turning', async () => {
    const salt = generateSalt();
    const started = performance.now();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const pending = derivePassphraseDataKey('per-instance-key', salt, DEFAULT_SCRYPT_PARAMS);
    const syncPart = performance.now() - started;
    await pending;
    clearInterval(timer);
    const total = performance.now() - started;
    console.log(`scrypt N=2^15 r=8 p=1: ${total.toFixed(1)} ms in total, ${syncPart.toFixed(2)} ms on the calling thread`);
    expect(total).toBeGreaterThan(10);
    expect(syncPart).toBeLessThan(total / 2);
    expect(ticks).toBeGreaterThan(0);
  });

  test('refuses weak keys and wrong-size salts', async () => {
    expect(await errorCode(() => deriveClientDataKey('password123password123', generateSalt()))).toBe('CLIENT_KEY_WEAK');
    expect(await errorCode(() => deriveClientDataKey(randomBytes(32).toString('hex'), new Uint8Array(16)))).toBe('BAD_REQUEST');
  });
});

/** Sets a low bit of the last base64 character, which a canonical encoder leaves zero. */
function strayLowBits(canonical: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(canonical.at(-1)!);
  return canonical.slice(0, -1) + alphabet[last | 1];
}

describe('client key strength', () => {
  const material = (label: string, n: number) => Buffer.from(bytesFrom(label, n));
  test.each([
    { name: '32 random bytes, base64', key: material('k32', 32).toString('base64'), bits: 256 },
    { name: '32 random bytes, base64 unpadded', key: material('k32', 32).toString('base64').replace(/=+$/, ''), bits: 256 },
    { name: '32 random bytes, base64url', key: material('k32u', 32).toString('base64url'), bits: 256 },
    { name: '32 random bytes, hex', key: material('k32h', 32).toString('hex'), bits: 256 },
    { name: '32 random bytes, upper-case hex', key: material('k32H', 32).toString('hex').toUpperCase(), bits: 256 },
    { name: '16 random bytes, hex', key: material('k16h', 16).toString('hex'), bits: 128 },
    { name: '16 random bytes, base64', key: material('k16', 16).toString('base64'), bits: 128 },
    { name: '16 random bytes, base64 unpadded', key: material('k16', 16).toString('base64').replace(/=+$/, ''), bits: 128 },
    { name: '15 random bytes, hex', key: material('k15h', 15).toString('hex'), bits: 120 },
    { name: '15 random bytes, base64', key: material('k15', 15).toString('base64'), bits: 120 },
    { name: 'password123password123', key: 'password123password123', bits: 0 },
    { name: 'a × 64', key: 'a'.repeat(64), bits: 0 },
    { name: '0 × 64', key: '0'.repeat(64), bits: 0 },
    { name: 'hex of 16 zero bytes', key: Buffer.alloc(16).toString('hex'), bits: 0 },
    { name: 'base64 of 32 zero bytes', key: Buffer.alloc(32).toString('base64'), bits: 0 },
    { name: 'hex counting sequence', key: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', bits: 0 },
    { name: 'repeated hex alphabet', key: '0123456789abcdef'.repeat(4), bits: 0 },
    { name: 'base64 of a repeated word', key: Buffer.from('secretsecretsecretsecret').toString('base64'), bits: 0 },
    { name: 'random hex with an embedded abcdefabcdef run', key: material('run', 32).toString('hex').slice(0, 40) + '0123456789ab' + material('run', 32).toString('hex').slice(52), bits: 0 },
    { name: 'a passphrase', key: 'correct horse battery staple', bits: 0 },
    { name: 'empty', key: '', bits: 0 },
    { name: 'base64 and base64url mixed', key: material('mix', 32).toString('base64url').slice(0, 41) + '-+', bits: 0 },
    { name: 'non-canonical base64 (stray low bits)', key: strayLowBits(material('nc', 16).toString('base64url')), bits: 0 },
    { name: 'odd-length hex', key: material('odd', 32).toString('hex').slice(0, 63), bits: 0 },
  ])('$name → $bits bits', async ({ key, bits }) => {
    expect(estimateClientKeyBits(key)).toBe(bits);
    // At least 128 bits: a key (HKDF); anything else of 8 characters or more: a passphrase (scrypt); shorter: refused.
    expect(clientKeyKind(key)).toBe(bits >= 128 ? 'key' : 'passphrase');
    const code = await errorCode(() => assertClientKeyStrong(key));
    expect(code).toBe(Array.from(key).length >= 8 ? 'NO_ERROR' : 'CLIENT_KEY_WEAK');
  });

  test.each([['', 0], ['hunter2', 7], ['😀😀😀😀😀😀😀', 7], ['per-key', 7]])('%j (%i characters) is refused as too short', async (key) => {
    expect(await errorCode(() => assertClientKeyStrong(key))).toBe('CLIENT_KEY_WEAK');
  });

  test.each([['per-instance-key'], ['hunter2!'], ['correct horse battery staple'], ['😀😀😀😀😀😀😀😀']])('%j is accepted as a passphrase', (key) => {
    expect(() => assertClientKeyStrong(key)).not.toThrow();
    expect(clientKeyKind(key)).toBe('passphrase');
  });

  test('the rejection explains the rule and never repeats the key', () => {
    const key = 'k3y-abc';
    let message = '';
    try {
      assertClientKeyStrong(key);
    } catch (err) {
      message = (err as Error).message;
      expect((err as { details?: Record<string, unknown> }).details).toEqual({ minLength: 8 });
    }
    expect(message).toMatch(/at least 8 characters/);
    expect(message).toMatch(/at least 16 random bytes/);
    expect(message).not.toContain(key);
  });

  test.each([
    { encoding: 'hex' as const, bytes: 16 },
    { encoding: 'base64' as const, bytes: 16 },
    { encoding: 'base64url' as const, bytes: 16 },
    { encoding: 'hex' as const, bytes: 32 },
    { encoding: 'base64' as const, bytes: 32 },
  ])('3000 fresh random keys of $bytes bytes as $encoding all pass', ({ encoding, bytes }) => {
    for (let i = 0; i < 3000; i++) {
      const key = randomBytes(bytes).toString(encoding);
      expect(estimateClientKeyBits(key), key).toBe(bytes * 8);
    }
  });
});
