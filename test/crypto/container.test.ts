import { describe, expect, test } from 'vitest';
import {
  createEncryptor,
  encryptChunk,
  parseHeader,
  decryptStream,
  plaintextSize,
  ciphertextRangeForPlaintext,
  decryptSegmentRun,
  generateDataKey,
  generateSalt,
  DEFAULT_SEGMENT_SIZE,
  MAX_HEADER_LENGTH,
  TAG_LENGTH,
  type EncryptorState,
} from '../../dist/crypto/index.js';
import { sealSegment } from '../../dist/crypto/container.js';
import { bytesFrom, chunked, collect, concat, errorCode, flipBit, prng, tonePcm, toneShare } from './fixtures.js';

const KEY_ID = 'mk-2024';

function encryptWhole(
  plaintext: Uint8Array,
  opts: { segmentSize?: number; channels?: 1 | 2; dataKey?: Uint8Array; sampleRate?: number } = {},
) {
  const dataKey = opts.dataKey ?? generateDataKey();
  const { header, state } = createEncryptor({
    dataKey,
    keyMode: 'server',
    keyId: KEY_ID,
    salt: generateSalt(),
    sampleRate: opts.sampleRate ?? 16000,
    channels: opts.channels ?? 1,
    ...(opts.segmentSize === undefined ? {} : { segmentSize: opts.segmentSize }),
  });
  const { output, state: done } = encryptChunk(state, plaintext, true);
  return { dataKey, header, object: concat(header, output), state: done };
}

async function decryptAll(object: Uint8Array, dataKey: Uint8Array, chunkSize = 4096): Promise<Uint8Array> {
  return collect(decryptStream(chunked(object, chunkSize), () => dataKey));
}

describe('round trip', () => {
  const S = DEFAULT_SEGMENT_SIZE;
  // Sizes in frames of `channels` PCM16 samples, except the odd byte counts that check the container
  // does not care about frame alignment.
  test.each([
    { channels: 1 as const, bytes: 0 },
    { channels: 1 as const, bytes: 1 },
    { channels: 1 as const, bytes: 1000 },
    { channels: 1 as const, bytes: S - 1 },
    { channels: 1 as const, bytes: S },
    { channels: 1 as const, bytes: 3 * S },
    { channels: 1 as const, bytes: 3 * S + 1 },
    { channels: 2 as const, bytes: 0 },
    { channels: 2 as const, bytes: 4000 },
    { channels: 2 as const, bytes: 2 * S },
    { channels: 2 as const, bytes: 2 * S + 4 },
  ])('$channels channel(s), $bytes bytes', async ({ channels, bytes }) => {
    const frequencies = channels === 1 ? [440] : [440, 1000];
    const frames = Math.ceil(bytes / (2 * channels));
    const plaintext = tonePcm(16000, frequencies, frames).subarray(0, bytes);
    const { dataKey, header, object } = encryptWhole(plaintext, { channels });

    const fullSegments = Math.floor(bytes / S);
    // Full segments are sealed eagerly, so the final segment holds bytes % S (possibly 0) bytes.
    expect(object.length).toBe(header.length + fullSegments * (S + TAG_LENGTH) + (bytes % S) + TAG_LENGTH);
    const parsed = parseHeader(object.subarray(0, MAX_HEADER_LENGTH));
    expect(parsed.headerLength).toBe(header.length);
    expect(parsed.header).toMatchObject({ version: 1, sampleFormat: 'pcm_s16le', sampleRate: 16000, channels, keyMode: 'server', keyId: KEY_ID, segmentSize: S });
    expect(plaintextSize(parsed.header, parsed.headerLength, object.length)).toBe(bytes);

    for (const chunkSize of [object.length || 1, 7, S + TAG_LENGTH]) {
      const decrypted = await decryptAll(object, dataKey, chunkSize);
      expect(Buffer.from(decrypted).equals(Buffer.from(plaintext))).toBe(true);
    }
    if (bytes >= 4000) {
      const samples = new Int16Array(plaintext.buffer.slice(0, bytes - (bytes % (2 * channels))));
      frequencies.forEach((f, c) => expect(toneShare(samples, channels, c, 16000, f)).toBeGreaterThan(0.9));
    }
  });

  test('stereo recording keeps channels apart through encryption', async () => {
    const plaintext = tonePcm(8000, [300, 2000], 8000); // one second
    const { dataKey, object } = encryptWhole(plaintext, { channels: 2, sampleRate: 8000, segmentSize: 1000 });
    const samples = new Int16Array((await decryptAll(object, dataKey, 333)).slice().buffer);
    expect(samples.length / 2 / 8000).toBe(1);
    expect(toneShare(samples, 2, 0, 8000, 300)).toBeGreaterThan(0.95);
    expect(toneShare(samples, 2, 0, 8000, 2000)).toBeLessThan(0.01);
    expect(toneShare(samples, 2, 1, 8000, 2000)).toBeGreaterThan(0.95);
    expect(toneShare(samples, 2, 1, 8000, 300)).toBeLessThan(0.01);
  });
});

describe('encryptChunk', () => {
  test.each([
    { segmentSize: 16, total: 16 * 9 + 5, seed: 1 },
    { segmentSize: 16, total: 16 * 8, seed: 2 },
    { segmentSize: 1000, total: 5 * 1000 + 999, seed: 3 },
    { segmentSize: DEFAULT_SEGMENT_SIZE, total: 3 * DEFAULT_SEGMENT_SIZE + 123, seed: 4 },
  ])('output is byte-identical however the plaintext is split (S=$segmentSize, $total bytes)', ({ segmentSize, total, seed }) => {
    const plaintext = bytesFrom(`split-${seed}`, total);
    const dataKey = generateDataKey();
    const { header, state } = createEncryptor({ dataKey, keyMode: 'client', keyId: '', salt: generateSalt(), sampleRate: 8000, channels: 1, segmentSize });
    const whole = encryptChunk(state, plaintext, true).output;

    const random = prng(seed);
    for (let trial = 0; trial < 20; trial++) {
      let current: EncryptorState = state;
      const outputs: Uint8Array[] = [];
      let at = 0;
      while (at < total) {
        // Include empty chunks and chunks spanning several segments.
        const size = Math.floor(random() * random() * segmentSize * 3);
        const chunk = plaintext.subarray(at, Math.min(total, at + size));
        at += chunk.length;
        // The state travels to a worker thread and back by structured clone on every batch.
        const step = encryptChunk(structuredClone(current), chunk, false);
        current = step.state;
        outputs.push(step.output);
        expect(current.pending.length).toBeLessThan(segmentSize);
        expect(current.pending.length).toBe(at % segmentSize);
      }
      const last = encryptChunk(structuredClone(current), new Uint8Array(0), true);
      expect(last.state.finished).toBe(true);
      outputs.push(last.output);
      expect(Buffer.from(concat(...outputs)).equals(Buffer.from(whole))).toBe(true);
    }
    expect(header.length).toBeGreaterThan(0);
  });

  test('does not modify the state it is given', () => {
    const { state } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'client', keyId: '', salt: generateSalt(), sampleRate: 8000, channels: 1, segmentSize: 10 });
    const first = encryptChunk(state, bytesFrom('a', 15), false).state;
    const snapshot = structuredClone(first);
    const again1 = encryptChunk(first, bytesFrom('b', 7), false);
    const again2 = encryptChunk(first, bytesFrom('b', 7), false);
    expect(first).toEqual(snapshot);
    expect(Buffer.from(again1.output).equals(Buffer.from(again2.output))).toBe(true);
    expect(again1.output.length).toBe(10 + TAG_LENGTH); // 5 pending + 7 new fill one segment
    expect(again1.state.pending.length).toBe(2);
  });

  test('the state is plain data', () => {
    const { state } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: KEY_ID, salt: generateSalt(), sampleRate: 8000, channels: 2 });
    const isPlain = (v: unknown): boolean =>
      typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' || (v instanceof Uint8Array && v.constructor === Uint8Array);
    for (const [field, value] of Object.entries(state)) expect(isPlain(value), field).toBe(true);
  });

  test('refuses to continue after the final segment', async () => {
    const { state } = encryptWhole(new Uint8Array(3));
    expect(await errorCode(() => encryptChunk(state, new Uint8Array(1), false))).toBe('CLOSED');
  });

  test.each([
    { name: 'server mode without key id', p: { keyMode: 'server' as const, keyId: '' } },
    { name: 'segment size 0', p: { segmentSize: 0 } },
    { name: 'segment size above 16 MiB', p: { segmentSize: 2 ** 24 + 1 } },
    { name: '3 channels', p: { channels: 3 as 1 } },
    { name: 'short salt', p: { salt: new Uint8Array(16) } },
    { name: 'key id over 255 bytes', p: { keyId: 'é'.repeat(128) } },
  ])('rejects $name', async ({ p }) => {
    const base = { dataKey: generateDataKey(), keyMode: 'client' as const, keyId: 'x', salt: generateSalt(), sampleRate: 8000, channels: 1 as const };
    expect(await errorCode(() => createEncryptor({ ...base, ...p }))).toBe('CONTAINER_INVALID');
  });

  test('nonce prefix and salt differ between recordings', () => {
    const a = encryptWhole(new Uint8Array(0));
    const b = encryptWhole(new Uint8Array(0));
    const ha = parseHeader(a.header).header;
    const hb = parseHeader(b.header).header;
    expect(Buffer.from(ha.noncePrefix).equals(Buffer.from(hb.noncePrefix))).toBe(false);
    expect(Buffer.from(ha.salt).equals(Buffer.from(hb.salt))).toBe(false);
  });
});

describe('integrity failures', () => {
  // 4 full segments and a 10-byte final one.
  const S = 64;
  const plaintext = bytesFrom('integrity', 4 * S + 10);
  const dataKey = generateDataKey();
  const { header, object } = encryptWhole(plaintext, { segmentSize: S, dataKey });
  const H = header.length;
  const seg = (i: number) => H + i * (S + TAG_LENGTH); // start of segment i
  const segmentBytes = (i: number) => object.subarray(seg(i), i < 4 ? seg(i + 1) : object.length);
  const noncePrefix = parseHeader(header).header.noncePrefix;
  const other = encryptWhole(plaintext, { segmentSize: S, dataKey }); // same key, new salt and nonce prefix

  const cases: Array<{ name: string; object: () => Uint8Array; key?: Uint8Array; code: string }> = [
    { name: 'segments 0 and 1 swapped', code: 'CONTAINER_TAMPERED', object: () => concat(header, segmentBytes(1), segmentBytes(0), object.subarray(seg(2))) },
    { name: 'segments 2 and 3 swapped', code: 'CONTAINER_TAMPERED', object: () => concat(object.subarray(0, seg(2)), segmentBytes(3), segmentBytes(2), segmentBytes(4)) },
    { name: 'segment 1 dropped', code: 'CONTAINER_TAMPERED', object: () => concat(object.subarray(0, seg(1)), object.subarray(seg(2))) },
    { name: 'segment 1 duplicated', code: 'CONTAINER_TAMPERED', object: () => concat(object.subarray(0, seg(2)), object.subarray(seg(1))) },
    { name: 'truncated at boundary before the final segment', code: 'CONTAINER_TRUNCATED', object: () => object.subarray(0, seg(4)) },
    { name: 'truncated at boundary after segment 0', code: 'CONTAINER_TRUNCATED', object: () => object.subarray(0, seg(1)) },
    { name: 'truncated right after the header', code: 'CONTAINER_TRUNCATED', object: () => object.subarray(0, H) },
    { name: 'truncated inside the header', code: 'CONTAINER_TRUNCATED', object: () => object.subarray(0, 40) },
    { name: 'empty object', code: 'CONTAINER_TRUNCATED', object: () => new Uint8Array(0) },
    { name: 'truncated inside a segment, less than a tag left', code: 'CONTAINER_TRUNCATED', object: () => object.subarray(0, seg(2) + 5) },
    // A cut inside a segment that leaves at least a tag's worth cannot be told from a forged final segment.
    { name: 'truncated inside a segment', code: 'CONTAINER_TAMPERED', object: () => object.subarray(0, seg(2) + 40) },
    { name: 'truncated inside the final segment', code: 'CONTAINER_TAMPERED', object: () => object.subarray(0, object.length - 1) },
    { name: 'extra final segment re-sealed with the same key', code: 'CONTAINER_TAMPERED', object: () => concat(object, sealSegment(dataKey, header, noncePrefix, 5, true, new Uint8Array(8))) },
    { name: 'empty final segment appended', code: 'CONTAINER_TAMPERED', object: () => concat(object, sealSegment(dataKey, header, noncePrefix, 5, true, new Uint8Array(0))) },
    { name: 'one byte of trailing garbage', code: 'CONTAINER_TAMPERED', object: () => concat(object, Uint8Array.of(0)) },
    { name: '200 bytes of trailing garbage', code: 'CONTAINER_TAMPERED', object: () => concat(object, bytesFrom('garbage', 200)) },
    { name: 'bit flipped in magic', code: 'CONTAINER_INVALID', object: () => flipBit(object, 1) },
    { name: 'bit flipped in version', code: 'CONTAINER_INVALID', object: () => flipBit(object, 8, 1) },
    { name: 'bit flipped in sample rate', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, 14, 3) },
    { name: 'bit flipped in segment size', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, 19, 0) },
    { name: 'bit flipped in nonce prefix', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, 22) },
    { name: 'bit flipped in salt', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, 40) },
    { name: 'bit flipped in key id', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, H - 1) },
    { name: 'key id shortened by one byte', code: 'CONTAINER_TAMPERED', object: () => concat(object.subarray(0, 59), Uint8Array.of(KEY_ID.length - 1), object.subarray(60, H - 1), object.subarray(H)) },
    { name: 'bit flipped in first segment ciphertext', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, seg(0) + 3) },
    { name: 'bit flipped in middle segment ciphertext', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, seg(2) + S - 1, 7) },
    { name: 'bit flipped in final segment ciphertext', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, seg(4)) },
    { name: 'bit flipped in a tag', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, seg(1) + S + 5) },
    { name: 'bit flipped in the final tag', code: 'CONTAINER_TAMPERED', object: () => flipBit(object, object.length - 1, 7) },
    { name: 'header swapped from another recording under the same key', code: 'CONTAINER_TAMPERED', object: () => concat(other.header, object.subarray(H)) },
    { name: 'body swapped from another recording under the same key', code: 'CONTAINER_TAMPERED', object: () => concat(header, other.object.subarray(other.header.length)) },
    { name: 'wrong key', code: 'CONTAINER_TAMPERED', object: () => object, key: generateDataKey() },
    { name: 'not a container at all', code: 'CONTAINER_INVALID', object: () => bytesFrom('noise', 500) },
  ];

  test('the untouched object decrypts', async () => {
    expect(Buffer.from(await decryptAll(object, dataKey)).equals(Buffer.from(plaintext))).toBe(true);
  });

  test.each(cases)('$name → $code', async ({ object: make, key, code }) => {
    const damaged = make();
    for (const chunkSize of [damaged.length || 1, 13, 1]) {
      const yielded: Uint8Array[] = [];
      const got = await errorCode(async () => {
        for await (const p of decryptStream(chunked(damaged, chunkSize), () => key ?? dataKey)) yielded.push(p);
      });
      expect(got, `chunks of ${chunkSize}`).toBe(code);
      // Whatever was released before the failure is genuine plaintext, in order.
      const released = concat(...yielded);
      expect(Buffer.from(released).equals(Buffer.from(plaintext.subarray(0, released.length)))).toBe(true);
    }
  });

  test('the key resolver sees the parsed header', async () => {
    const seen: string[] = [];
    await collect(decryptStream(chunked(object, 50), (h) => (seen.push(`${h.keyMode}:${h.keyId}:${h.segmentSize}`), dataKey)));
    expect(seen).toEqual([`server:${KEY_ID}:${S}`]);
  });
});

describe('ranges', () => {
  test.each([
    { S: 64, bytes: 64 * 7 + 33 },
    { S: 64, bytes: 64 * 7 }, // ends with an empty final segment
    { S: 1, bytes: 50 },
    { S: DEFAULT_SEGMENT_SIZE, bytes: 2 * DEFAULT_SEGMENT_SIZE + 3000 },
  ])('random plaintext ranges equal slices of the plaintext (S=$S, $bytes bytes)', ({ S, bytes }) => {
    const plaintext = bytesFrom(`range-${S}-${bytes}`, bytes);
    const { dataKey, object } = encryptWhole(plaintext, { segmentSize: S });
    const { header, headerLength } = parseHeader(object);
    const headerBytes = object.subarray(0, headerLength);
    expect(plaintextSize(header, headerLength, object.length)).toBe(bytes);

    const random = prng(bytes);
    const ranges: Array<[number, number]> = [[0, bytes - 1], [0, 0], [bytes - 1, bytes - 1], [0, bytes + 1000]];
    for (let i = 0; i < 200; i++) {
      const start = Math.floor(random() * bytes);
      ranges.push([start, start + Math.floor(random() * random() * bytes)]);
    }
    for (const [start, end] of ranges) {
      const r = ciphertextRangeForPlaintext(header, headerLength, object.length, start, end);
      const run = decryptSegmentRun(header, headerBytes, dataKey, r.firstSegment, object.subarray(r.cipherStart, r.cipherEndInclusive + 1), r.lastSegmentIsFinal);
      const got = run.subarray(r.skipBytes, r.skipBytes + r.length);
      const expected = plaintext.subarray(start, Math.min(end, bytes - 1) + 1);
      expect(r.plaintextSize).toBe(bytes);
      expect(Buffer.from(got).equals(Buffer.from(expected)), `range ${start}-${end}`).toBe(true);
      // Only the segments that hold the range are fetched.
      expect(r.cipherEndInclusive - r.cipherStart + 1).toBeLessThanOrEqual((r.lastSegment - r.firstSegment + 1) * (S + TAG_LENGTH));
    }
  });

  test('a run decrypts only when its segments sit at the claimed position and finality', async () => {
    const S = 32;
    const plaintext = bytesFrom('run', S * 3 + 5);
    const { dataKey, object } = encryptWhole(plaintext, { segmentSize: S });
    const { header, headerLength } = parseHeader(object);
    const hb = object.subarray(0, headerLength);
    const segmentRun = (first: number, count: number) => object.subarray(headerLength + first * (S + 16), Math.min(object.length, headerLength + (first + count) * (S + 16)));
    expect(Buffer.from(decryptSegmentRun(header, hb, dataKey, 1, segmentRun(1, 2), false)).equals(Buffer.from(plaintext.subarray(S, 3 * S)))).toBe(true);
    expect(await errorCode(() => decryptSegmentRun(header, hb, dataKey, 2, segmentRun(1, 2), false))).toBe('CONTAINER_TAMPERED');
    expect(await errorCode(() => decryptSegmentRun(header, hb, dataKey, 1, segmentRun(1, 2), true))).toBe('CONTAINER_TAMPERED');
    expect(await errorCode(() => decryptSegmentRun(header, hb, dataKey, 3, segmentRun(3, 1), false))).toBe('CONTAINER_INVALID');
    expect(await errorCode(() => decryptSegmentRun(header, hb, generateDataKey(), 3, segmentRun(3, 1), true))).toBe('CONTAINER_TAMPERED');
    expect(Buffer.from(decryptSegmentRun(header, hb, dataKey, 3, segmentRun(3, 1), true)).equals(Buffer.from(plaintext.subarray(3 * S)))).toBe(true);
  });

  test.each([
    { name: 'start past the end', start: 100, end: 200, code: 'RANGE_NOT_SATISFIABLE' },
    { name: 'start at the end', start: 99, end: 99, code: 'RANGE_NOT_SATISFIABLE' },
    { name: 'end before start', start: 10, end: 9, code: 'RANGE_NOT_SATISFIABLE' },
    { name: 'negative start', start: -1, end: 9, code: 'RANGE_NOT_SATISFIABLE' },
  ])('$name → $code', async ({ start, end, code }) => {
    const { object } = encryptWhole(bytesFrom('r', 99), { segmentSize: 16 });
    const { header, headerLength } = parseHeader(object);
    expect(await errorCode(() => ciphertextRangeForPlaintext(header, headerLength, object.length, start, end))).toBe(code);
  });

  test('an empty recording has no satisfiable range', async () => {
    const { object } = encryptWhole(new Uint8Array(0));
    const { header, headerLength } = parseHeader(object);
    expect(plaintextSize(header, headerLength, object.length)).toBe(0);
    expect(await errorCode(() => ciphertextRangeForPlaintext(header, headerLength, object.length, 0, 0))).toBe('RANGE_NOT_SATISFIABLE');
  });

  test('plaintext size follows from object size alone, and impossible sizes are rejected', async () => {
    const S = 16;
    const { object } = encryptWhole(new Uint8Array(0), { segmentSize: S });
    const { header, headerLength: H } = parseHeader(object);
    const sizes: Array<[number, number | string]> = [
      [H + 16, 0],
      [H + 16 + 5, 5],
      [H + 16 + S, S], // one final segment of exactly S bytes
      [H + (S + 16) + 16, S],
      [H + (S + 16) + 16 + 3, S + 3],
      [H + 2 * (S + 16), 2 * S],
      [H + 15, 'CONTAINER_INVALID'],
      [H, 'CONTAINER_INVALID'],
      [H + (S + 16) + 15, 'CONTAINER_INVALID'], // a full segment followed by less than a tag
      [H + (S + 16) + 1, 'CONTAINER_INVALID'],
    ];
    for (const [size, expected] of sizes) {
      const got = typeof expected === 'number' ? plaintextSize(header, H, size) : await errorCode(() => plaintextSize(header, H, size));
      expect(got, `object size ${size}`).toBe(expected);
    }
  });
});

describe('parseHeader', () => {
  test('needs only the header bytes, and at most MAX_HEADER_LENGTH of them', () => {
    const { header, state } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: 'k'.repeat(255), salt: generateSalt(), sampleRate: 48000, channels: 2 });
    expect(header.length).toBe(315);
    expect(parseHeader(header).headerLength).toBe(315);
    expect(Buffer.from(state.header).equals(Buffer.from(header))).toBe(true);
    // The longest: a passphrase client key (key mode 03) with a 255-byte label, then its 5 bytes of scrypt parameters.
    const longest = createEncryptor({ dataKey: generateDataKey(), keyMode: 'client', keyId: 'k'.repeat(255), salt: generateSalt(), sampleRate: 48000, channels: 2, scrypt: { log2N: 15, r: 8, p: 1 } }).header;
    expect(longest.length).toBe(MAX_HEADER_LENGTH);
    expect(MAX_HEADER_LENGTH).toBe(320);
    const parsed = parseHeader(longest);
    expect(parsed.headerLength).toBe(MAX_HEADER_LENGTH);
    expect(parsed.header).toMatchObject({ keyMode: 'client', keyId: 'k'.repeat(255), scrypt: { log2N: 15, r: 8, p: 1 } });
  });

  test('key mode 03: a passphrase client key, its scrypt parameters after the key id', () => {
    const { header } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'client', keyId: 'demo', salt: generateSalt(), sampleRate: 16000, channels: 1, scrypt: { log2N: 16, r: 8, p: 2 } });
    expect(header[15]).toBe(3);
    expect(header.length).toBe(60 + 4 + 5);
    expect([...header.subarray(64)]).toEqual([16, 0, 8, 0, 2]);
    expect(parseHeader(header).header).toMatchObject({ keyMode: 'client', keyId: 'demo', scrypt: { log2N: 16, r: 8, p: 2 } });
    // HKDF client keys (02) carry no parameters.
    const hkdf = createEncryptor({ dataKey: generateDataKey(), keyMode: 'client', keyId: 'demo', salt: generateSalt(), sampleRate: 16000, channels: 1 }).header;
    expect(hkdf[15]).toBe(2);
    expect(parseHeader(hkdf).header.scrypt).toBeUndefined();
  });

  test.each([
    { name: 'N below 2^10', at: 0, value: 9 },
    { name: 'N above 2^20', at: 0, value: 21 },
    { name: 'r = 0', at: 2, value: 0 },
    { name: 'r above 32', at: 2, value: 33 },
    { name: 'p = 0', at: 4, value: 0 },
    { name: 'p above 16', at: 4, value: 17 },
    { name: 'more than 256 MiB (N = 2^20, r = 8)', at: 0, value: 20 },
  ])('scrypt parameters out of bounds ($name) are CONTAINER_INVALID, so a crafted header cannot exhaust a reader', async ({ at, value }) => {
    const { header } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'client', keyId: '', salt: generateSalt(), sampleRate: 16000, channels: 1, scrypt: { log2N: 15, r: 8, p: 1 } });
    const bad = Uint8Array.from(header);
    bad[60 + at] = value;
    expect(await errorCode(() => parseHeader(bad))).toBe('CONTAINER_INVALID');
  });

  test('scrypt parameters on a server-mode header are refused when writing', async () => {
    expect(
      await errorCode(() => createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: 'mk', salt: generateSalt(), sampleRate: 16000, channels: 1, scrypt: { log2N: 15, r: 8, p: 1 } })),
    ).toBe('CONTAINER_INVALID');
  });

  test.each([
    { name: 'too short for the fixed part', mutate: (h: Uint8Array) => h.subarray(0, 30) },
    { name: 'too short for the key id', mutate: (h: Uint8Array) => h.subarray(0, h.length - 1) },
    { name: 'unknown sample format', mutate: (h: Uint8Array) => flipBit(h, 9, 1) },
    { name: 'three channels', mutate: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [10]: 3 }) },
    { name: 'sample rate 0', mutate: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [11]: 0, [12]: 0, [13]: 0, [14]: 0 }) },
    { name: 'unknown key mode', mutate: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [15]: 4 }) },
    { name: 'segment size 0', mutate: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [16]: 0, [17]: 0, [18]: 0, [19]: 0 }) },
    { name: 'key id not UTF-8', mutate: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [60]: 0xff }) },
  ])('rejects $name with CONTAINER_INVALID', async ({ mutate }) => {
    const { header } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: 'abc', salt: generateSalt(), sampleRate: 16000, channels: 1 });
    expect(await errorCode(() => parseHeader(mutate(header)))).toBe('CONTAINER_INVALID');
  });
});

describe('sample format mp3 (0x02): opaque MPEG audio, stored as received', () => {
  const mp3Encryptor = (sampleRate: number, channels: 0 | 1 | 2) =>
    createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: KEY_ID, salt: generateSalt(), sampleRate, channels, sampleFormat: 'mp3' });

  test.each([
    { sampleRate: 44100, channels: 1 as const },
    { sampleRate: 22050, channels: 2 as const },
    { sampleRate: 0, channels: 0 as const },
  ])('$sampleRate Hz, $channels channel(s): header byte 9 is 0x02 and the bytes round-trip unchanged', async ({ sampleRate, channels }) => {
    const { header, state } = mp3Encryptor(sampleRate, channels);
    expect(header[9]).toBe(0x02);
    expect(parseHeader(header).header).toMatchObject({ sampleFormat: 'mp3', sampleRate, channels });
    // An odd length: MPEG bytes need not be whole PCM frames.
    const audio = bytesFrom('mp3 payload', 3 * DEFAULT_SEGMENT_SIZE + 417);
    const object = concat(header, encryptChunk(state, audio, true).output);
    const dataKey = state.dataKey;
    expect(Buffer.from(await decryptAll(object, dataKey, 1000)).equals(Buffer.from(audio))).toBe(true);
  });

  test.each([
    { name: 'PCM with 0 channels', make: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [9]: 1, [10]: 0 }) },
    { name: 'MP3 with 3 channels', make: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [10]: 3 }) },
    { name: 'PCM with sample rate 0', make: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [9]: 1, [10]: 1, [11]: 0, [12]: 0, [13]: 0, [14]: 0 }) },
    { name: 'sample format 0x03', make: (h: Uint8Array) => Object.assign(Uint8Array.from(h), { [9]: 3 }) },
  ])('rejects $name with CONTAINER_INVALID', async ({ make }) => {
    const { header } = mp3Encryptor(0, 0);
    expect(await errorCode(() => parseHeader(make(header)))).toBe('CONTAINER_INVALID');
  });

  test('unknown rate and channels are refused for PCM when writing too', async () => {
    expect(
      await errorCode(() => createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: KEY_ID, salt: generateSalt(), sampleRate: 0, channels: 0 })),
    ).toBe('CONTAINER_INVALID');
  });
});
