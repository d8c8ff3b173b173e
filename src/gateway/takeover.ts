/**
 * Recovery by a peer: the `checkpoint-takeover` fleet job finishes the interrupted recordings of a gateway dead
 * for longer than the takeover period from their spool checkpoints in S3 (checkpoint.ts).
 */
import { rm, stat } from 'node:fs/promises';
import { toCallvaultError } from '../errors/index.js';
import { downloadCheckpoints } from './checkpoint.js';
import { recoverRecording, settleRecovery } from './recovery.js';
import type { RecordingServices } from './services.js';

/** The fleet-wide job that finishes dead peers' checkpointed recordings. */
export const CHECKPOINT_TAKEOVER_LEASE = 'checkpoint-takeover';
export const DEFAULT_CHECKPOINT_TAKEOVER_MS = 300_000;
/** Recordings taken over per run of the job. */
const TAKEOVER_BATCH = 10;

export interface TakeoverDeps {
  takeoverAfterMs: number;
  signal: AbortSignal;
  /** Whether this gateway records or recovers `recordingId` itself right now (never taken over then). */
  isLocal(recordingId: string): boolean;
  /** Told of each recovery under way (it is local until `done` settles), so shutdown can wait for it. */
  track(recordingId: string, done: Promise<void>): void;
}

/**
 * The `checkpoint-takeover` job: every interrupted recording with checkpoints whose owner has been dead for
 * `takeoverAfterMs` is taken over (CAS on the owner), downloaded and finished here. Returns how many were taken.
 */
export async function takeOverCheckpointed(services: RecordingServices, deps: TakeoverDeps): Promise<number> {
  const { db, logger, metrics, gatewayId } = services;
  const orphans = await db.recordings.checkpointedOrphans(gatewayId, deps.takeoverAfterMs, TAKEOVER_BATCH);
  let taken = 0;
  for (const orphan of orphans) {
    if (deps.isLocal(orphan.id)) continue;
    const ids = { recordingId: orphan.id, from: orphan.ownerGateway };
    // The CAS: exactly one gateway gets it, and the dead owner back on its volume finds it gone (recovery.ts).
    if (orphan.ownerGateway !== gatewayId && !(await db.recordings.takeOver(orphan.id, orphan.ownerGateway, gatewayId))) continue;
    try {
      const row = await db.recordings.get(orphan.orgId, orphan.id);
      if (!row) continue;
      const manifest = await downloadCheckpoints(services, row.bucket, orphan.id);
      if (!manifest) {
        // Nothing to finish it from (the objects were removed): it stays interrupted, and is not offered again.
        await db.recordings.forgetCheckpoints(orphan.id);
        logger.warn(ids, 'interrupted recording has no usable checkpoint objects');
        continue;
      }
      logger.info({ ...ids, gatewayId }, 'interrupted recording of a dead gateway taken over from its spool checkpoints');
      const outcome = await recoverRecording(services, { recordingId: orphan.id, manifest: manifest as unknown as Record<string, unknown>, size: 0 }, deps.signal);
      if (outcome === 'cleaned' || outcome === 'skipped') continue;
      taken++;
      const done = settleRecovery(services, orphan.id, outcome.done);
      deps.track(orphan.id, done);
      void outcome.done.then(
        () => metrics.recordingsTakenOver.inc({ outcome: 'completed' }),
        () => metrics.recordingsTakenOver.inc({ outcome: 'failed' }),
      );
    } catch (err) {
      metrics.recordingsTakenOver.inc({ outcome: 'failed' });
      const error = toCallvaultError(err);
      logger.error({ ...ids, code: error.code, err: error }, 'could not finish a taken-over recording; retried at the next run');
      // Still interrupted and owned here: the next run downloads it again. Once the manifest is in the spool the
      // entry is whole and stays, for the next start's recovery (or POST …/retry) should the row have moved on.
      const manifestPath = services.spool.manifestPath(orphan.id);
      const whole = await stat(manifestPath).then(
        () => true,
        () => false,
      );
      if (!whole) {
        await services.spool.removeFiles(orphan.id).catch((rmErr: unknown) => logger.error({ recordingId: orphan.id, err: rmErr }, 'could not remove a partial takeover'));
        for (const path of [services.spool.journalPath(orphan.id), services.spool.dataPath(orphan.id), manifestPath]) await rm(`${path}.tmp`, { force: true });
      }
    }
  }
  return taken;
}
