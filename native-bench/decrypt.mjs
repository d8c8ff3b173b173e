#!/usr/bin/env node
// Decrypt-and-stream throughput of a recording, against a baseline taken in the same run: raw AES-256-GCM
// decryption of the same ciphertext, one segment (16 KiB) per decipher, tags checked, nothing else. The
// recording path is `decryptStream` (src/crypto/decrypt.ts), as the API and the CLI use it: the container
// arrives in 64 KiB pieces (what an S3 body or a file stream hands over), segments are cut out, nonces
// derived, each verified before its plaintext is yielded. Ratios are what to compare between runs.
//
//   npm run build && node native-bench/decrypt.mjs [--seconds 600] [--rounds 7]
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createEncryptor, decryptStream, encryptChunk, generateDataKey, generateSalt } from '../dist/crypto/index.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '600' }, rounds: { type: 'string', default: '7' } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const SAMPLE_RATE = 16000;
const PIECE = 64 * 1024;

// A stereo 16 kHz recording of `seconds`, sealed as the gateway seals it.
const dataKey = generateDataKey();
const { header, state } = createEncryptor({ dataKey, keyMode: 'server', keyId: 'bench', salt: generateSalt(), sampleRate: SAMPLE_RATE, channels: 2 });
const plaintext = randomBytes(seconds * SAMPLE_RATE * 2 * 2);
const sealed = encryptChunk(state, plaintext, true).output;
const container = Buffer.concat([header, sealed]);

async function* pieces(bytes) {
  for (let at = 0; at < bytes.length; at += PIECE) yield bytes.subarray(at, at + PIECE);
}

async function recordingPath() {
  let bytes = 0;
  for await (const plain of decryptStream(pieces(container), () => dataKey)) bytes += plain.length;
  if (bytes !== plaintext.length) throw new Error(`decrypted ${bytes} bytes, expected ${plaintext.length}`);
}

// The baseline: the same number of 16 KiB segments, each sealed with its own nonce, opened with one
// decipher each. Prepared once, outside the timing.
const SEGMENT = 16384;
const key = randomBytes(32);
const baselineSegments = [];
for (let at = 0; at < plaintext.length; at += SEGMENT) {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(plaintext.subarray(at, at + SEGMENT)), cipher.final()]);
  baselineSegments.push({ iv, body, tag: cipher.getAuthTag() });
}
function baseline() {
  let bytes = 0;
  for (const { iv, body, tag } of baselineSegments) {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAuthTag(tag);
    bytes += decipher.update(body).length + decipher.final().length;
  }
  if (bytes !== plaintext.length) throw new Error('baseline decrypted the wrong length');
}

async function time(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

await recordingPath();
baseline();
const ours = [];
const raw = [];
for (let r = 0; r < rounds; r++) {
  raw.push(await time(baseline));
  ours.push(await time(recordingPath));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = plaintext.length / (1024 * 1024);
const oursMiBs = mib / median(ours);
const rawMiBs = mib / median(raw);
console.log(`recording: ${seconds} s stereo ${SAMPLE_RATE} Hz, ${mib.toFixed(1)} MiB of PCM, median of ${rounds} rounds`);
console.log(`raw AES-256-GCM (16 KiB segments):  ${rawMiBs.toFixed(0)} MiB/s`);
console.log(`decryptStream (64 KiB pieces):     ${oursMiBs.toFixed(0)} MiB/s`);
console.log(`decrypt-and-stream / raw GCM:      ${((oursMiBs / rawMiBs) * 100).toFixed(1)} %`);
