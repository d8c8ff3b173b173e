/**
 * Start-up recovery: every recording this gateway owned that a crash (or a shutdown that ran out of time)
 * left in the spool is finished from its frame journal. The journal is replayed through the same
 * deterministic pipeline into a fresh container (a new nonce prefix, so no nonce is ever reused for other
 * plaintext), which is uploaded from the start; the orphaned multipart upload is aborted by its stored id.
 *
 * Two phases: rebuilding the containers on local disk happens before the gateway accepts streams; the
 * uploads then run like any other, retried until S3 takes them, while the gateway serves.
 */
import { createEncryptor } from '../crypto/index.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import { createCallDspState, type InputFrame } from '../pipeline/index.js';
import { readJournal, type SpoolEntry, type SpoolFile } from '../storage/index.js';
import { abortOpenUploads, uploadSpoolUntilDone } from './durable-sink.js';
import { deleteCheckpoints } from './checkpoint.js';
import { DEFAULT_DEAD_AFTER_MS } from './fleet.js';
import { REPLAY_BATCH_FRAMES } from './pipeline-replay.js';
import { isRecoverableManifest, manifestDataKey, type RecordingManifest } from './envelope.js';
import { retryWhileRetryable } from './retry.js';
import type { RecordingServices } from './services.js';


export interface RecoveryReport {
  /** Recordings rebuilt locally whose upload and completion are under way. */
  rebuilt: number;
  /** Spool entries removed because their recording was already complete or no longer exists. */
  cleaned: number;
  /** Recordings that could not be rebuilt; their spool stays for the next start. */
  failed: number;
  /** Resolves once every rebuilt recording is complete in S3 and PostgreSQL (or the signal aborted). */
  uploads: Promise<void>;
}

export async function recoverSpool(services: RecordingServices, signal: AbortSignal): Promise<RecoveryReport> {
  const { logger, metrics } = services;
  const entries = await services.spool.list();
  const uploads: Array<Promise<void>> = [];
  const report: Omit<RecoveryReport, 'uploads'> = { rebuilt: 0, cleaned: 0, failed: 0 };
  for (const entry of entries) {
    const ids = { recordingId: entry.recordingId };
    try {
      const outcome = await recoverRecording(services, entry, signal);
      if (outcome === 'cleaned') report.cleaned++;
      else if (outcome !== 'skipped') {
        report.rebuilt++;
        uploads.push(settleRecovery(services, entry.recordingId, outcome.done));
      }
    } catch (err) {
      report.failed++;
      metrics.recordingsRecovered.inc({ outcome: 'failed' });
      const error = toCallvaultError(err);
      logger.error({ ...ids, code: error.code, err: error }, 'could not recover recording from the spool');
    }
  }
  if (entries.length > 0) logger.info({ ...report, found: entries.length }, 'spool recovery');
  return { ...report, uploads: Promise.all(uploads).then(() => undefined) };
}

/** Counts and logs how a rebuilt recording's upload and completion ended; never rejects. */
export function settleRecovery(services: RecordingServices, recordingId: string, done: Promise<void>): Promise<void> {
  return done.then(
    () => services.metrics.recordingsRecovered.inc({ outcome: 'completed' }),
    (err: unknown) => {
      services.metrics.recordingsRecovered.inc({ outcome: 'failed' });
      const error = toCallvaultError(err);
      services.logger.error({ recordingId, code: error.code, err: error }, 'recovered recording could not be completed');
    },
  );
}

/** 'cleaned' / 'skipped', or the promise of the rebuilt recording's completion (wrapped: an async function would await it). */
export async function recoverRecording(
  services: RecordingServices,
  entry: SpoolEntry,
  signal: AbortSignal,
): Promise<'cleaned' | 'skipped' | { done: Promise<void> }> {
  const { db, logger } = services;
  const manifest = entry.manifest;
  if (entry.unreadable) {
    logger.error({ recordingId: entry.recordingId, reason: entry.unreadable }, 'spool entry unreadable, left as it is');
    return 'skipped';
  }
  if (!isRecoverableManifest(manifest)) {
    logger.warn({ recordingId: entry.recordingId }, 'spool entry has no frame journal, left as it is');
    return 'skipped';
  }
  const ids = { recordingId: manifest.recordingId, recordingSid: manifest.recordingSid };
  const row = await db.recordings.get(manifest.orgId, manifest.recordingId);
  if (!row || row.status === 'completed') {
    // Deleted meanwhile, or the crash came between completing and removing the spool.
    await services.spool.removeFiles(manifest.recordingId);
    logger.info({ ...ids, status: row?.status ?? 'deleted' }, 'spool entry of a finished recording removed');
    return 'cleaned';
  }
  // This gateway holds the spool now (the owner restarted, or a replacement was given its volume): it owns the
  // recording, and one marked interrupted while its owner was down is in progress again until it completes.
  if (!(await db.recordings.claimForRecovery(manifest.recordingId, services.gatewayId, services.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS))) {
    // A live peer took it over from its spool checkpoints while this gateway was down: it finishes it, not this spool.
    await services.spool.removeFiles(manifest.recordingId);
    logger.warn({ ...ids, ownerGateway: row.ownerGateway, gatewayId: services.gatewayId }, 'spool entry of a recording a peer took over discarded');
    return 'cleaned';
  }
  if (row.status === 'interrupted') logger.info({ ...ids, gatewayId: services.gatewayId }, 'interrupted recording taken back for recovery');
  // The interrupted attempt, and any earlier one whose abort failed while S3 was away: aborted by id.
  const abortError = await abortOpenUploads(services, manifest.recordingId, manifest.bucket, manifest.objectKey);
  if (abortError) logger.warn({ ...ids, err: abortError }, 'could not abort the interrupted multipart upload');
  if (manifest.sealedDurationMs !== undefined) {
    // An import: its data file was complete and sealed before its upload began; it goes up as it is.
    const spoolFile = await services.spool.reopenSealed(manifest.recordingId);
    logger.info({ ...ids, durationMs: manifest.sealedDurationMs }, 'sealed recording found in the spool');
    return { done: finishUpload(services, manifest, spoolFile, manifest.sealedDurationMs, signal, row.checkpointedAt !== null) };
  }
  const spoolFile = await services.spool.rewrite(manifest.recordingId);
  const dataKey = manifestDataKey(manifest, services.keyring.all);
  if (!dataKey) {
    await db.recordings.fail(manifest.recordingId, { errorCode: ErrorCode.RecoveryKeyUnavailable, endedAt: new Date(services.now()) });
    if (manifest.callDbId) await db.calls.end(manifest.callDbId, new Date(services.now()));
    await spoolFile.remove();
    if (row.checkpointedAt) await deleteCheckpoints(services, manifest.bucket, manifest.recordingId);
    logger.error({ ...ids, code: ErrorCode.RecoveryKeyUnavailable }, 'crashed client-key recording cannot be finished: its key was not kept');
    return 'cleaned';
  }
  const journal = await readJournal(services.spool.journalPath(manifest.recordingId), manifest.recordingId, dataKey);

  const { header, state: encryptor } = createEncryptor({
    dataKey,
    keyMode: manifest.keyMode,
    keyId: manifest.keyId,
    salt: Buffer.from(manifest.salt, 'base64'),
    sampleRate: manifest.sampleRate,
    channels: manifest.channels,
    ...(manifest.scrypt ? { scrypt: manifest.scrypt } : {}),
  });
  await spoolFile.append(header);
  const dsp = createCallDspState({ outputRate: manifest.sampleRate as RecordingServices['outputSampleRate'], stereo: manifest.channels === 2 });
  const session = services.pool.openSession(dsp, encryptor);
  let durationSamples = 0;
  const frames: InputFrame[] = journal.frames;
  try {
    for (let i = 0; i === 0 || i < frames.length; i += REPLAY_BATCH_FRAMES) {
      const batch = frames.slice(i, i + REPLAY_BATCH_FRAMES);
      const final = i + REPLAY_BATCH_FRAMES >= frames.length;
      const result = await session.run(batch, final);
      durationSamples = result.stats.durationSamples;
      if (result.output.byteLength > 0) await spoolFile.append(result.output);
    }
  } finally {
    session.close();
  }
  await spoolFile.seal();
  const durationMs = Math.round((durationSamples / manifest.sampleRate) * 1000);
  logger.info(
    { ...ids, frames: frames.length, records: journal.records, tornBytes: journal.tornBytes, durationMs },
    'recording rebuilt from its journal',
  );

  return { done: finishUpload(services, manifest, spoolFile, durationMs, signal, row.checkpointedAt !== null) };
}

/** Uploads a rebuilt (or sealed) spool file until S3 takes it, then completes the row and ends the call. */
async function finishUpload(
  services: RecordingServices,
  manifest: RecordingManifest,
  spoolFile: SpoolFile,
  durationMs: number,
  signal: AbortSignal,
  checkpointed: boolean,
): Promise<void> {
  const { db, logger } = services;
  const ids = { recordingId: manifest.recordingId, recordingSid: manifest.recordingSid };
  // The audio is complete on local disk: until S3 has it, the API shows it as uploading.
  await db.recordings
    .markUploading(manifest.recordingId)
    .catch((err: unknown) => logger.error({ ...ids, code: toCallvaultError(err).code, err }, 'could not mark recording uploading'));
  const { size } = await uploadSpoolUntilDone(services, {
    recordingId: manifest.recordingId,
    recordingSid: manifest.recordingSid,
    objectKey: manifest.objectKey,
    keyMode: manifest.keyMode,
    spoolFile,
    signal,
  });
  const endedAt = new Date(services.now());
  await retryWhileRetryable(services, signal, 'could not mark recovered recording completed', ids, () =>
    db.recordings.completeRecovered(manifest.recordingId, { durationMs, sizeBytes: size, endedAt }),
  );
  const callDbId = manifest.callDbId;
  if (callDbId) {
    await retryWhileRetryable(services, signal, 'could not mark call ended', ids, () => db.calls.end(callDbId, endedAt)).catch((err: unknown) => {
      // The call may have gone on on another stream and ended there; the recording is what matters here.
      if (!(err instanceof CallvaultError) || err.code !== ErrorCode.NotFound) throw err;
    });
  }
  await spoolFile.remove();
  // Complete: its checkpoints (this gateway's, or the dead owner's a takeover downloaded) are of no more use.
  if (checkpointed) await deleteCheckpoints(services, manifest.bucket, manifest.recordingId);
  logger.info({ ...ids, durationMs, sizeBytes: size }, 'recording recovered');
}
