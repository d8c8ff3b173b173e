import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { InputFrame } from '../../src/pipeline/index.js';
import { JournalWriter } from '../../src/storage/journal.js';
import { BATCH_MAX_WAIT_MS, FrameBatcher, type BatcherHooks } from '../../src/gateway/batcher.js';
import { ErrorCode, type CallvaultError } from '../../src/errors/index.js';

/** One 20 ms mu-law frame at 8 kHz whose first byte is its index, so order and duplicates show. */
function frame(index: number): InputFrame {
  const data = new Uint8Array(160).fill(index % 256);
  return { trackId: 'inbound', role: 'caller', encoding: 'mulaw', sampleRate: 8000, position: index * 160, data };
}

/** A batch runner that records what it was given and can be held, like a busy worker pool. */
class Runner {
  readonly batches: Array<{ first: number[]; final: boolean }> = [];
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open();
  }
  readonly run = async (frames: InputFrame[], final: boolean): Promise<void> => {
    await this.#gate;
    this.batches.push({ first: frames.map((f) => f.position / 160), final });
  };
  get processed(): number[] {
    return this.batches.flatMap((b) => b.first);
  }
}

let dir: string;
let journal: JournalWriter;
const failures: CallvaultError[] = [];
let catchUps = 0;
const hooks: BatcherHooks = { onFailure: (err) => failures.push(err), onCatchUpStarted: () => catchUps++ };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callvault-batcher-'));
  const id = randomUUID();
  journal = await JournalWriter.create({ path: join(dir, `${id}.journal`), recordingId: id, dataKey: randomBytes(32) });
  failures.length = 0;
  catchUps = 0;
});

afterEach(async () => {
  await journal.close();
  await rm(dir, { recursive: true, force: true });
});

describe('FrameBatcher', () => {
  test('a batch leaves at the tick once 75 ms of audio wait (not on arrival), and a quiet call is moved after the longest wait', async () => {
    const runner = new Runner();
    const batcher = new FrameBatcher(journal, runner.run, hooks);
    batcher.push([frame(0), frame(1), frame(2)], 1000); // 60 ms
    batcher.tick(1050);
    await Promise.resolve();
    expect(runner.batches).toEqual([]);
    batcher.push([frame(3), frame(4)], 1060); // 100 ms: it waits for the tick, with the other calls' batches
    await Promise.resolve();
    expect(runner.batches).toEqual([]);
    batcher.tick(1100);
    await expect.poll(() => runner.batches).toEqual([{ first: [0, 1, 2, 3, 4], final: false }]);
    batcher.push([frame(5)], 2000);
    batcher.tick(2000 + BATCH_MAX_WAIT_MS - 1);
    await Promise.resolve();
    expect(runner.processed).toEqual([0, 1, 2, 3, 4]);
    batcher.tick(2000 + BATCH_MAX_WAIT_MS);
    await expect.poll(() => runner.processed).toEqual([0, 1, 2, 3, 4, 5]);
  });

  test('a burst (a sender ahead of real time) goes at once, without waiting for the tick', async () => {
    const runner = new Runner();
    const batcher = new FrameBatcher(journal, runner.run, hooks);
    batcher.push(Array.from({ length: 10 }, (_, i) => frame(i)), 0); // 200 ms in one go
    await expect.poll(() => runner.processed).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('drain runs what is left and then the final batch', async () => {
    const runner = new Runner();
    const batcher = new FrameBatcher(journal, runner.run, hooks);
    batcher.push([frame(0), frame(1)], 0);
    await batcher.drain();
    expect(runner.batches).toEqual([{ first: [0, 1], final: true }]);
  });

  test('workers far behind: memory stays bounded, the rest is read back from the journal, in order, once', async () => {
    const runner = new Runner();
    runner.hold();
    // Memory holds at most 1 s (50 frames); the sender sends 20 s while the first batch is stuck.
    const batcher = new FrameBatcher(journal, runner.run, hooks, { maxPendingMediaMs: 1000, maxJournalBacklogBytes: 64 * 1024 * 1024 });
    for (let i = 0; i < 1000; i++) {
      batcher.push([frame(i)], i * 20);
      expect(batcher.pendingMediaMs).toBeLessThanOrEqual(1000);
      if (i % 50 === 0) batcher.tick(i * 20); // group commit, as the gateway's tick does
    }
    expect(batcher.catchingUp).toBe(true);
    expect(catchUps).toBe(1);
    runner.release();
    await batcher.drain();
    expect(runner.processed).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(runner.batches.at(-1)?.final).toBe(true);
    expect(failures).toEqual([]);
  });

  test('a sender beyond the hard bound is refused with OVERLOADED; what it sent is journaled', async () => {
    const runner = new Runner();
    runner.hold();
    const batcher = new FrameBatcher(journal, runner.run, hooks, { maxPendingMediaMs: 100, maxJournalBacklogBytes: 4096 });
    let refused: CallvaultError | undefined;
    let sent = 0;
    for (; sent < 500 && !refused; sent++) {
      try {
        batcher.push([frame(sent)], sent * 20);
        batcher.tick(sent * 20);
        await journal.flush();
      } catch (err) {
        refused = err as CallvaultError;
      }
    }
    expect(refused?.code).toBe(ErrorCode.Overloaded);
    await journal.flush();
    expect(journal.durableFrames).toBe(sent);
    batcher.stop();
    runner.release();
  });

  test('stop discards memory and starts nothing more', async () => {
    const runner = new Runner();
    const batcher = new FrameBatcher(journal, runner.run, hooks);
    batcher.push([frame(0)], 0);
    batcher.stop();
    batcher.push([frame(1), frame(2), frame(3), frame(4), frame(5)], 0);
    batcher.tick(10_000);
    await batcher.drain();
    expect(runner.batches).toEqual([]);
  });

  test('a runner that throws is reported as a pipeline failure', async () => {
    const batcher = new FrameBatcher(journal, async () => {
      throw new Error('worker gone');
    }, hooks);
    batcher.push([frame(0), frame(1), frame(2), frame(3), frame(4)], 0);
    batcher.tick(0);
    await expect.poll(() => failures.map((f) => f.code)).toEqual([ErrorCode.PipelineFailed]);
  });
});
