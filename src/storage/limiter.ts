import { CallvaultError, ErrorCode } from '../errors/index.js';

/** One part's claim on memory; release() is idempotent so every exit path may call it. */
export interface PartPermit {
  release(): void;
}

interface Waiter {
  grant(permit: PartPermit): void;
  reject(err: unknown): void;
}

/**
 * A global, FIFO semaphore over upload parts held in memory across ALL uploads. It is what bounds
 * the process's memory when many calls upload at once: a part is read from the spool only after
 * its permit is granted.
 */
export class PartLimiter {
  private held = 0;
  private peak = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new CallvaultError(ErrorCode.ConfigInvalid, 'part limiter needs a positive integer size', { details: { max } });
    }
  }

  /** Parts currently holding a permit (read from disk and not yet uploaded). */
  get inFlight(): number {
    return this.held;
  }

  /** Parts whose upload waits for a permit. */
  get waiting(): number {
    return this.queue.length;
  }

  /** The highest `inFlight` ever reached: evidence the bound held. */
  get highWater(): number {
    return this.peak;
  }

  acquire(signal?: AbortSignal): Promise<PartPermit> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.held < this.max && this.queue.length === 0) return Promise.resolve(this.grant());
    return new Promise<PartPermit>((resolve, reject) => {
      const onAbort = () => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) this.queue.splice(index, 1);
        reject(abortError(signal!));
      };
      const waiter: Waiter = {
        grant: (permit) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(permit);
        },
        reject,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private grant(): PartPermit {
    this.held += 1;
    this.peak = Math.max(this.peak, this.held);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.held -= 1;
        this.dispatch();
      },
    };
  }

  private dispatch(): void {
    while (this.held < this.max && this.queue.length > 0) {
      this.queue.shift()!.grant(this.grant());
    }
  }
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new CallvaultError(ErrorCode.Closed, 'wait for an upload part permit was aborted');
}
