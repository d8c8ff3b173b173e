import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { PipelineTask, PipelineResult, SealTask } from './worker.js';

export interface PipelinePoolOptions {
  threads?: number;
  /**
   * Batches allowed to wait for a thread. Beyond it, callers wait in `run()` (backpressure) instead of
   * piling work into piscina's queue, so memory held by queued batches stays bounded.
   */
  maxQueued?: number;
}

/**
 * The worker threads that do all DSP and encryption. The main thread only moves bytes.
 * A batch is one call's ~100 ms of audio plus its DSP and encryptor state; one call never has two
 * batches in flight, so state can travel with the task.
 */
export class PipelinePool {
  readonly #piscina: Piscina<PipelineTask | SealTask, PipelineResult | Uint8Array>;
  readonly #maxQueued: number;
  readonly #waiters: Array<() => void> = [];
  #running = 0;
  #closed = false;

  constructor(options: PipelinePoolOptions = {}) {
    const threads = options.threads ?? Math.max(1, availableParallelism());
    this.#piscina = new Piscina({
      filename: new URL('./worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
    });
    this.#maxQueued = options.maxQueued ?? threads * 64;
  }

  get threads(): number {
    return this.#piscina.maxThreads;
  }

  /** Batches submitted and not yet finished (running or queued inside piscina). */
  get pending(): number {
    return this.#running;
  }

  /** Callers waiting for room in the queue. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * The live worker threads. Piscina replaces one that exits; tests terminate one here to prove a call
   * survives losing the batch it had in flight.
   */
  get workers(): readonly Worker[] {
    return this.#piscina.threads;
  }

  get utilization(): number {
    return this.#piscina.utilization;
  }

  get ready(): boolean {
    return !this.#closed && this.#piscina.threads.length > 0;
  }

  /**
   * Runs one batch. `signal` is the owner's (a recording's): once it aborts, a batch still waiting for a
   * thread is dropped, and one running has its thread terminated (piscina replaces it); either rejects
   * with the abort reason, so the owner's work stops where it is.
   */
  async run(task: PipelineTask, signal?: AbortSignal): Promise<PipelineResult> {
    if (this.#closed) throw new CallvaultError(ErrorCode.Closed, 'pipeline pool is closed');
    while (this.#running >= this.#maxQueued + this.threads) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
      if (this.#closed) throw new CallvaultError(ErrorCode.Closed, 'pipeline pool is closed');
    }
    if (signal?.aborted) {
      this.#waiters.shift()?.();
      throw signal.reason;
    }
    this.#running++;
    try {
      return (await this.#piscina.run(task, signal ? { signal } : {})) as PipelineResult;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw new CallvaultError(ErrorCode.PipelineFailed, 'pipeline batch failed', { cause: err });
    } finally {
      this.#running--;
      this.#waiters.shift()?.();
    }
  }

  /**
   * Encrypts and seals a whole finished recording (an import) on a worker thread. The plaintext's memory is
   * moved there when it owns it (it is not used afterwards), copied otherwise.
   */
  async seal(task: SealTask): Promise<Uint8Array> {
    if (this.#closed) throw new CallvaultError(ErrorCode.Closed, 'pipeline pool is closed');
    const { plaintext } = task;
    const owned = plaintext.byteOffset === 0 && plaintext.byteLength === plaintext.buffer.byteLength && plaintext.byteLength > 64 * 1024;
    try {
      return (await this.#piscina.run(task, { name: 'seal', ...(owned ? { transferList: [plaintext.buffer as ArrayBuffer] } : {}) })) as Uint8Array;
    } catch (err) {
      throw new CallvaultError(ErrorCode.PipelineFailed, 'sealing the recording failed', { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#waiters.splice(0)) wake();
    await this.#piscina.close();
  }
}
