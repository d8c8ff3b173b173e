/**
 * The retention sweeper: deletes recordings that ended more than their organisation's retention period ago
 * (`PUT /api/retention`), through the same removal as `DELETE /calls/{callId}/recording` (object, open
 * uploads, spool files, row), then the call's transcript entries and events once no recording of it is left.
 * Recordings in progress or uploading are never touched. A self-contained object: `start()` schedules
 * `sweepOnce(now)` on an interval, `close()` stops it and waits for a sweep under way, so a fleet-wide lease
 * can wrap it (run `sweepOnce` only where the lease is held).
 */
import type { Database, Recording as RecordingRow } from '../db/index.js';
import { toCallvaultError } from '../errors/index.js';
import type { PollScheduler } from '../gateway/options.js';
import type { Logger } from '../log/index.js';
import type { GatewayMetrics } from '../metrics/index.js';

export const DEFAULT_RETENTION_SWEEP_INTERVAL_MS = 60 * 60_000;
const DEFAULT_BATCH_SIZE = 100;

export interface RetentionSweeperDeps {
  db: Database;
  /** Removes one recording everywhere: the API's own deletion (`RecordingMedia.remove`). */
  remove: (orgId: string, row: RecordingRow) => Promise<void>;
  logger: Logger;
  metrics: GatewayMetrics;
  /** The clock `start()` sweeps with. */
  now: () => number;
  intervalMs?: number;
  scheduler?: PollScheduler;
  /** Whether a scheduled sweep may run now (the gateway is running, not draining); default always. */
  mayRun?: () => boolean;
  batchSize?: number;
}

export interface RetentionDeletion {
  orgId: string;
  recordingId: string;
  recordingSid: string;
  callId: string | null;
}

export interface SweepResult {
  deleted: RetentionDeletion[];
  /** Recordings whose deletion failed; they stay for the next sweep. */
  failed: number;
}

const defaultScheduler: PollScheduler = (task, intervalMs) => {
  const timer = setInterval(task, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
};

export class RetentionSweeper {
  readonly #deps: RetentionSweeperDeps;
  #stop: (() => void) | null = null;
  #running: Promise<SweepResult> | null = null;
  #closed = false;

  constructor(deps: RetentionSweeperDeps) {
    this.#deps = deps;
  }

  /** Schedules a sweep every interval (none overlaps the previous one). Idempotent; nothing after close(). */
  start(): void {
    if (this.#stop || this.#closed) return;
    const { intervalMs = DEFAULT_RETENTION_SWEEP_INTERVAL_MS, scheduler = defaultScheduler, mayRun = () => true, now } = this.#deps;
    this.#stop = scheduler(() => {
      if (this.#closed || this.#running || !mayRun()) return;
      void this.sweepOnce(new Date(now())).catch((err: unknown) => {
        this.#deps.logger.error({ code: toCallvaultError(err).code, err }, 'retention sweep failed');
      });
    }, intervalMs);
  }

  /** Stops the schedule and waits for a sweep under way. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop?.();
    this.#stop = null;
    await this.#running?.catch(() => undefined);
  }

  /** Deletes every recording expired at `now`; a sweep already under way is joined rather than doubled. */
  sweepOnce(now: Date): Promise<SweepResult> {
    if (this.#running) return this.#running;
    const run = this.#sweep(now).finally(() => {
      this.#running = null;
    });
    this.#running = run;
    return run;
  }

  async #sweep(now: Date): Promise<SweepResult> {
    const { db, remove, logger, metrics, batchSize = DEFAULT_BATCH_SIZE } = this.#deps;
    const result: SweepResult = { deleted: [], failed: 0 };
    const failedIds = new Set<string>();
    for (;;) {
      // Failed ones come back in the next batch: asking for that many more keeps the sweep moving past them.
      const batch = (await db.recordings.expired(now, batchSize + failedIds.size)).filter((r) => !failedIds.has(r.id));
      for (const row of batch) {
        if (this.#closed) return result;
        try {
          await remove(row.orgId, row);
        } catch (err) {
          failedIds.add(row.id);
          result.failed += 1;
          metrics.retentionDeletions.inc({ outcome: 'failed' });
          logger.error({ orgId: row.orgId, recordingId: row.id, recordingSid: row.recordingSid, code: toCallvaultError(err).code, err }, 'retention deletion failed');
          continue;
        }
        // The deletion removed the call's sealed artifacts with the recording; rows staged since go once no recording is left.
        if (row.callId) await db.artifacts.deleteIfUnrecorded(row.callId);
        metrics.retentionDeletions.inc({ outcome: 'deleted' });
        result.deleted.push({ orgId: row.orgId, recordingId: row.id, recordingSid: row.recordingSid, callId: row.callId });
        logger.info(
          { orgId: row.orgId, recordingId: row.id, recordingSid: row.recordingSid, callId: row.callId, endedAt: (row.endedAt ?? row.startedAt).toISOString() },
          'recording deleted by retention',
        );
      }
      if (batch.length < batchSize) return result;
    }
  }
}
