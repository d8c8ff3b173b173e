#!/usr/bin/env node
// Pipeline cost per call, measured against a baseline taken in the same run on the same machine:
// AES-256-GCM over the same bytes (the irreducible cost of encrypting a recording). The machine is
// shared and noisy, so ratios are what to compare between runs, not absolute times.
//
//   npm run build && node native-bench/pipeline.mjs [--seconds 60] [--rate 16000] [--rounds 5]
import { createCipheriv, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createCallDspState, processBatch, mulawEncode } from '../dist/pipeline/index.js';
import { createEncryptor, encryptChunk, generateDataKey, generateSalt } from '../dist/crypto/index.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '60' }, rate: { type: 'string', default: '16000' }, rounds: { type: 'string', default: '5' } },
});
const seconds = Number(values.seconds);
const outputRate = Number(values.rate);
const rounds = Number(values.rounds);

/** A Twilio call: two tracks of 20 ms mu-law frames, grouped into ~100 ms batches as the gateway sends them. */
function twilioBatches() {
  const batches = [];
  let batch = [];
  for (let ms = 0; ms < seconds * 1000; ms += 20) {
    for (const [trackId, role, hz] of [['inbound', 'caller', 440], ['outbound', 'agent', 1000]]) {
      const pcm = new Int16Array(160);
      for (let i = 0; i < 160; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * hz * (ms * 8 + i)) / 8000));
      batch.push({ trackId, role, encoding: 'mulaw', sampleRate: 8000, position: ms * 8, data: mulawEncode(pcm) });
    }
    if (batch.length === 10) {
      batches.push(batch);
      batch = [];
    }
  }
  if (batch.length) batches.push(batch);
  return batches;
}

function runPipeline(batches) {
  let dsp = createCallDspState({ outputRate, stereo: true });
  let { state: enc } = createEncryptor({ dataKey: generateDataKey(), keyMode: 'server', keyId: 'bench', salt: generateSalt(), sampleRate: outputRate, channels: 2 });
  let bytes = 0;
  batches.forEach((frames, i) => {
    const final = i === batches.length - 1;
    // The state stays on the worker thread that holds the call (src/pipeline/worker.ts): no clone per batch.
    const r = processBatch(dsp, frames, { final });
    dsp = r.state;
    const e = encryptChunk(enc, r.pcm, final);
    enc = e.state;
    bytes += e.output.byteLength;
  });
  return bytes;
}

function runBaseline(plainBytes) {
  const key = randomBytes(32);
  const segment = Buffer.alloc(16384, 1);
  let bytes = 0;
  for (let done = 0; done < plainBytes; done += segment.length) {
    const cipher = createCipheriv('aes-256-gcm', key, randomBytes(12));
    bytes += cipher.update(segment).length + cipher.final().length + cipher.getAuthTag().length;
  }
  return bytes;
}

function time(fn) {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const batches = twilioBatches();
const plainBytes = seconds * outputRate * 2 * 2;
runPipeline(batches);
runBaseline(plainBytes);
// The baseline is short; repeat it so timer resolution and scheduling noise do not dominate the ratio.
const BASELINE_REPEAT = 20;
const pipeline = [];
const baseline = [];
for (let r = 0; r < rounds; r++) {
  baseline.push(
    time(() => {
      for (let i = 0; i < BASELINE_REPEAT; i++) runBaseline(plainBytes);
    }) / BASELINE_REPEAT,
  );
  pipeline.push(time(() => runPipeline(batches)));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p = median(pipeline);
const b = median(baseline);
console.log(`call: ${seconds} s, 2 tracks of 8 kHz mu-law -> ${outputRate} Hz stereo, ${batches.length} batches; median of ${rounds} rounds`);
console.log(`baseline  AES-256-GCM over the recording's bytes: ${(b * 1000).toFixed(1)} ms`);
console.log(`pipeline  decode+resample+align+mix+encrypt (+state clones): ${(p * 1000).toFixed(1)} ms`);
console.log(`ratio     pipeline / baseline: ${(p / b).toFixed(1)}x`);
console.log(`capacity  ${(seconds / p).toFixed(0)}x real time per core, i.e. about ${Math.floor(seconds / p)} concurrent calls per core`);
