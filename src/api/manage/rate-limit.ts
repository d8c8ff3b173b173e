/**
 * Per-organisation, per-call rate limit of the control routes (start, stop, pause, resume). A sliding window:
 * each (organisation, call) may make `limit` requests in any `windowMs`; the next is refused with
 * RATE_LIMITED (429) and `Retry-After`, the seconds until the oldest request in the window leaves it.
 * Memory is bounded: keys whose window has passed are swept, and at most MAX_KEYS are tracked.
 */
import { CallvaultError, ErrorCode } from '../../errors/index.js';

export const DEFAULT_CONTROL_RATE_LIMIT = 10;
export const DEFAULT_CONTROL_RATE_WINDOW_MS = 60_000;
const MAX_KEYS = 100_000;

export interface ControlRateLimiter {
  /** Counts one request for this call of this organisation, or throws RATE_LIMITED. */
  take(orgId: string, callKey: string): void;
}

export function createControlRateLimiter(opts: { limit?: number; windowMs?: number; now: () => number }): ControlRateLimiter {
  const limit = opts.limit ?? DEFAULT_CONTROL_RATE_LIMIT;
  const windowMs = opts.windowMs ?? DEFAULT_CONTROL_RATE_WINDOW_MS;
  const hits = new Map<string, number[]>();
  let lastSweep = 0;

  const sweep = (now: number): void => {
    lastSweep = now;
    for (const [key, times] of hits) {
      if (times.length === 0 || times[times.length - 1]! <= now - windowMs) hits.delete(key);
    }
  };

  return {
    take(orgId, callKey) {
      const now = opts.now();
      if (now - lastSweep > windowMs || hits.size >= MAX_KEYS) sweep(now);
      // JSON keeps the two parts apart whatever characters the call key holds.
      const key = JSON.stringify([orgId, callKey]);
      const times = (hits.get(key) ?? []).filter((t) => t > now - windowMs);
      if (times.length >= limit) {
        hits.set(key, times);
        const retryAfterSeconds = Math.max(1, Math.ceil((times[0]! + windowMs - now) / 1000));
        throw new CallvaultError(ErrorCode.RateLimited, 'too many control requests for this call; retry later', {
          retryable: true,
          details: { retryAfterSeconds, limit, windowSeconds: windowMs / 1000 },
        });
      }
      if (hits.size >= MAX_KEYS && !hits.has(key)) {
        // Every slot holds a live window: refuse rather than grow without bound.
        throw new CallvaultError(ErrorCode.RateLimited, 'too many control requests; retry later', {
          retryable: true,
          details: { retryAfterSeconds: Math.ceil(windowMs / 1000), limit, windowSeconds: windowMs / 1000 },
        });
      }
      times.push(now);
      hits.set(key, times);
    },
  };
}
