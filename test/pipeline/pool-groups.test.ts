/**
 * The batches of many calls started in one turn (one gateway tick) reach each worker thread as one message and
 * come back as one, and every call still gets exactly its own audio: each session's stream of sealed segments
 * decrypts to its own tones, in its own channels. A batch that fails on the thread fails alone.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createEncryptor, decryptStream, generateDataKey, generateSalt } from '../../dist/crypto/index.js';
import { createCallDspState } from '../../dist/pipeline/index.js';
import { PipelinePool, type PipelineSession } from '../../dist/pipeline/pool.js';
import type { InputFrame } from '../../dist/pipeline/index.js';
import { generateTone, sliceMs, splitChannels, toneAmplitude } from '../support/audio.js';
import { chunk, twilioInbound, twilioOutbound } from './frames.js';

const CALLS = 12;
const SECONDS = 2;
const FRAMES_PER_TICK = 10; // 100 ms of a two-track call
const AMPLITUDE = 9000;

let pool: PipelinePool;
beforeAll(() => {
  pool = new PipelinePool({ threads: 2 });
});
afterAll(async () => {
  await pool.close();
});

interface Call {
  session: PipelineSession;
  header: Uint8Array;
  dataKey: Uint8Array;
  frames: InputFrame[];
  output: Uint8Array[];
  callerHz: number;
  agentHz: number;
}

function openCall(i: number): Call {
  const dataKey = generateDataKey();
  const { header, state } = createEncryptor({ dataKey, keyMode: 'server', keyId: 'pool', salt: generateSalt(), sampleRate: 16000, channels: 2 });
  // Each call its own pair of tones: a batch delivered to the wrong session would show in the wrong call.
  // All within the resampler's passband (0.85 × 4 kHz) and apart from one another.
  const callerHz = 300 + 80 * i;
  const agentHz = 1500 + 80 * i;
  const samples = SECONDS * 8000;
  const inbound = chunk(twilioInbound, generateTone({ frequency: callerHz, sampleRate: 8000, samples, amplitude: AMPLITUDE }), 160);
  const outbound = chunk(twilioOutbound, generateTone({ frequency: agentHz, sampleRate: 8000, samples, amplitude: AMPLITUDE }), 160);
  const frames = inbound.flatMap((f, k) => [f, outbound[k]!]);
  const session = pool.openSession(createCallDspState({ outputRate: 16000, stereo: true }), state);
  return { session, header, dataKey, frames, output: [], callerHz, agentHz };
}

async function decrypt(call: Call): Promise<Int16Array[]> {
  async function* body() {
    yield call.header;
    for (const part of call.output) yield part;
  }
  const chunks: Uint8Array[] = [];
  for await (const plain of decryptStream(body(), () => call.dataKey)) chunks.push(Uint8Array.from(plain));
  const pcm = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    pcm.set(c, o);
    o += c.length;
  }
  return splitChannels(pcm, 2);
}

test('the batches of one tick go to each thread as one message; each call decrypts to its own tones', async () => {
  const calls = Array.from({ length: CALLS }, (_, i) => openCall(i));
  const ticks = calls[0]!.frames.length / FRAMES_PER_TICK;
  const before = pool.messages;
  for (let tick = 0; tick < ticks; tick++) {
    const final = tick === ticks - 1;
    // One gateway tick: every call's batch is started in the same turn.
    const results = await Promise.all(calls.map((call) => call.session.run(call.frames.slice(tick * FRAMES_PER_TICK, (tick + 1) * FRAMES_PER_TICK), final)));
    results.forEach((result, i) => calls[i]!.output.push(result.output));
  }
  // One message per thread per tick (not one per call per tick): 2 × 20 rather than 12 × 20.
  expect(pool.messages - before).toBeLessThanOrEqual(ticks * pool.threads);
  for (const call of calls) {
    const [left, right] = await decrypt(call);
    expect(left!.length).toBe(SECONDS * 16000);
    const body = (channel: Int16Array) => sliceMs(channel, 16000, 100, SECONDS * 1000 - 100);
    expect(toneAmplitude(body(left!), 16000, call.callerHz)).toBeGreaterThan(AMPLITUDE * 0.8);
    expect(toneAmplitude(body(right!), 16000, call.agentHz)).toBeGreaterThan(AMPLITUDE * 0.8);
    expect(toneAmplitude(body(left!), 16000, call.agentHz)).toBeLessThan(AMPLITUDE * 0.05);
    expect(toneAmplitude(body(right!), 16000, call.callerHz)).toBeLessThan(AMPLITUDE * 0.05);
  }
});

test('a batch that fails on the thread fails alone: the other batches of its group are recorded', async () => {
  const [good, bad] = [openCall(0), openCall(1)];
  // A frame before the timeline's start: the DSP refuses it, and that batch throws on the thread.
  const broken = bad.frames.slice(0, FRAMES_PER_TICK).map((f, k) => (k === 3 ? { ...f, position: -160 } : f));
  const [ok, failed] = await Promise.allSettled([good.session.run(good.frames.slice(0, FRAMES_PER_TICK), false), bad.session.run(broken, false)]);
  expect(ok).toMatchObject({ status: 'fulfilled' });
  expect(failed).toMatchObject({ status: 'rejected', reason: { code: 'PIPELINE_FAILED' } });
  // The failed batch left its session as it was: the next batch of that call runs on.
  await expect(bad.session.run(bad.frames.slice(0, FRAMES_PER_TICK), false)).resolves.toMatchObject({ stats: expect.anything() });
});
