/**
 * Retrying what must eventually succeed: uploads and row updates of a recording whose audio is safe in the
 * spool. Nothing here gives up on time; only an abort (destroy, delete, shutdown) ends a retry loop.
 */
import { toCallvaultError } from '../errors/index.js';
import type { RecordingServices } from './services.js';

export const DEFAULT_RETRY = { initialDelayMs: 500, maxDelayMs: 30_000 } as const;

/** Exponential backoff with jitter: half the capped delay fixed, half random, so a fleet does not retry in step. */
export function retryDelayMs(attempt: number, initialMs: number, maxMs: number): number {
  const capped = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return capped / 2 + Math.random() * (capped / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs a database write until it succeeds: a restarting PostgreSQL must not turn a finished recording into a lost one. */
export async function retryWhileRetryable<T>(
  services: Pick<RecordingServices, 'retry' | 'logger'>,
  signal: AbortSignal,
  message: string,
  ids: Record<string, unknown>,
  write: () => Promise<T>,
): Promise<T> {
  const { initialDelayMs, maxDelayMs } = services.retry ?? DEFAULT_RETRY;
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      const error = toCallvaultError(err);
      if (!error.retryable || signal.aborted) throw error;
      services.logger.warn({ ...ids, code: error.code, attempt, err: error }, message);
      await sleep(retryDelayMs(attempt, initialDelayMs, maxDelayMs), signal);
    }
  }
}
