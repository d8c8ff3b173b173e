/**
 * Stores a recording that was finished elsewhere (Twilio's recorder, ElevenLabs) like any recording: the
 * same envelope (keys, header, object name), the same durable sink (spool → upload, retried until S3 takes
 * it, recovered after a crash), the same row lifecycle, linked to its call. The container keeps the audio's
 * own sample rate and channel count (the header carries them), so nothing is resampled. Keyed on the
 * external id so that retries and concurrent duplicates store it once. MP3 (ElevenLabs) goes into the
 * container undecoded, with sample format `mp3`, and is served back as the same MP3.
 */
import type { RecordingOptions } from '../config/index.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import type { RecordingSource } from '../db/index.js';
import { DurableSink } from './durable-sink.js';
import { openEnvelope, recordingManifest } from './envelope.js';
import { retryWhileRetryable } from './retry.js';
import type { RecordingServices } from './services.js';

export interface PcmAudio {
  sampleRate: number;
  channels: 1 | 2;
  /** Interleaved PCM16 little-endian. */
  pcm: Uint8Array;
}

/** Compressed audio kept exactly as received; rate, channels and duration only describe it (0 = unknown). */
export interface Mp3Audio {
  format: 'mp3';
  bytes: Uint8Array;
  sampleRate: number;
  channels: 0 | 1 | 2;
  durationMs: number;
}

export interface StoreFinishedParams {
  orgId: string;
  callId: string | null;
  /** For the object name: the CallSid or conversation id. */
  callExternalId: string;
  source: Extract<RecordingSource, 'twilio' | 'signalwire' | 'elevenlabs'>;
  externalSid: string;
  /** `stereo` other than `true` (the default is mono) mixes PCM down to mono; MP3 is never re-encoded, so it stays as it came. */
  options: Pick<RecordingOptions, 'key' | 'stereo'>;
  audio: PcmAudio | Mp3Audio;
  startedAt: Date;
  metadata: Record<string, unknown>;
}

export type StoreFinishedResult =
  | {
      outcome: 'stored';
      id: string;
      recordingSid: string;
      /** `uploading`: durable in the spool, S3 has not taken it yet; it completes on its own. */
      status: 'completed' | 'uploading';
      durationMs: number;
      sizeBytes: number;
    }
  | { outcome: 'duplicate'; id: string; recordingSid: string; status: string };

/** An import still uploading after this long is answered as `uploading`: it is durable, the sender need not wait. */
const IMPORT_UPLOAD_WAIT_MS = 10_000;

/** Averages a stereo frame into one sample: `stereo: false` asks for a mono recording. */
function downmix(pcm: Uint8Array): Uint8Array {
  const frames = Math.floor(pcm.length / 4);
  const view = new DataView(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const out = new Uint8Array(frames * 2);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < frames; i++) {
    const mixed = Math.round((view.getInt16(i * 4, true) + view.getInt16(i * 4 + 2, true)) / 2);
    outView.setInt16(i * 2, mixed, true);
  }
  return out;
}

/**
 * Resolves once the recording is durable: with `completed` when S3 took it at the first attempt, with
 * `uploading` as soon as that attempt failed or IMPORT_UPLOAD_WAIT_MS passed (the spool holds it; the upload goes on, retried until S3 is
 * back, and the next start finishes it after a crash). Rejects, undoing the claim, only when it could not
 * be made durable at all, so the sender's retry starts afresh.
 */
export async function storeFinishedRecording(
  services: RecordingServices,
  params: StoreFinishedParams,
  /** The gateway's: aborted when it is destroyed, which leaves the upload to the next start. */
  signal: AbortSignal,
): Promise<StoreFinishedResult> {
  const { db } = services;
  const existing = await db.imports.findByExternalSid(params.orgId, params.source, params.externalSid);
  if (existing) return { outcome: 'duplicate', ...existing };

  const encoded = 'format' in params.audio ? params.audio : null;
  let channels: 0 | 1 | 2 = params.audio.channels;
  let plaintext = encoded ? encoded.bytes : (params.audio as PcmAudio).pcm;
  if (!encoded && params.options.stereo !== true && channels === 2) {
    plaintext = downmix(plaintext);
    channels = 1;
  }
  const sampleRate = params.audio.sampleRate;
  const envelope = await openEnvelope(services, {
    orgId: params.orgId,
    callExternalId: params.callExternalId,
    ...(params.options.key !== undefined ? { clientKey: params.options.key } : {}),
    startedAt: params.startedAt,
    sampleRate,
    channels,
    ...(encoded ? { sampleFormat: 'mp3' as const } : {}),
  });
  const claimed = await db.imports.claim({
    orgId: params.orgId,
    callId: params.callId,
    source: params.source,
    channels,
    sampleRate,
    // The object is a cvr1 container either way; for MP3 the row says what the media route serves.
    format: encoded ? 'mp3' : 'cvr1',
    mediaType: encoded ? 'audio/mpeg' : 'application/vnd.callvault.recording',
    bucket: services.bucket,
    objectKey: envelope.objectKey,
    keyMode: envelope.keyMode,
    keyId: envelope.keyMode === 'server' ? envelope.keyId : null,
    wrappedKey: envelope.keyMode === 'server' ? envelope.wrappedKey : null,
    startedAt: params.startedAt,
    metadata: params.metadata,
    externalSid: params.externalSid,
    // Its spool (the sealed import) is on this gateway until the upload is done.
    ownerGateway: services.gatewayId,
  });
  if (!claimed) {
    const winner = await db.imports.findByExternalSid(params.orgId, params.source, params.externalSid);
    if (!winner) throw new CallvaultError(ErrorCode.Conflict, 'a concurrent import of this recording is being undone, try again', { retryable: true });
    return { outcome: 'duplicate', ...winner };
  }

  const ids = { recordingSid: claimed.recordingSid, source: params.source, externalSid: params.externalSid };
  const durationMs = encoded ? encoded.durationMs : Math.round((plaintext.length / (2 * channels) / sampleRate) * 1000);
  let backlogged!: () => void;
  const firstAttemptFailed = new Promise<'uploading'>((resolve) => (backlogged = () => resolve('uploading')));
  let sink: DurableSink;
  let output: Uint8Array;
  try {
    // Up to 32 MiB: encrypted on a worker thread, so live calls are not held up.
    output = await services.pool.seal({ encryptor: envelope.encryptor, plaintext });
    sink = await DurableSink.open(services, {
      manifest: recordingManifest(services, envelope, {
        recordingId: claimed.id,
        recordingSid: claimed.recordingSid,
        orgId: params.orgId,
        callDbId: params.callId,
        callExternalId: params.callExternalId,
        sampleRate,
        channels,
        startedAt: params.startedAt,
        sealedDurationMs: durationMs,
      }),
      header: envelope.header,
      body: output,
      onBacklogged: backlogged,
      signal,
    });
  } catch (err) {
    const error = toCallvaultError(err, ErrorCode.SpoolFailed);
    services.logger.error({ ...ids, code: error.code, err: error }, 'imported recording could not be sealed and spooled');
    // Undo the claim so the sender's retry starts afresh rather than finding a half-imported recording.
    await db.imports
      .release(claimed.id)
      .catch((releaseErr: unknown) => services.logger.error({ ...ids, code: toCallvaultError(releaseErr).code, err: releaseErr }, 'could not release the import claim'));
    throw error;
  }

  const completion = (async () => {
    const { size } = await sink.finish();
    await retryWhileRetryable(services, sink.signal, 'could not mark imported recording completed', ids, () =>
      db.recordings.complete(claimed.id, { durationMs, sizeBytes: size, endedAt: new Date(services.now()) }),
    );
    await sink.remove();
    services.logger.info({ ...ids, durationMs, sizeBytes: size }, 'imported recording stored');
    return size;
  })();
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<'uploading'>((resolve) => (timer = setTimeout(resolve, IMPORT_UPLOAD_WAIT_MS, 'uploading')));
  const first = await Promise.race([completion, firstAttemptFailed, slow])
    .catch((err: unknown) => {
      throw toCallvaultError(err, ErrorCode.StorageUnavailable);
    })
    .finally(() => clearTimeout(timer));
  if (first !== 'uploading') {
    return { outcome: 'stored', id: claimed.id, recordingSid: claimed.recordingSid, status: 'completed', durationMs, sizeBytes: first };
  }
  // Durable locally, S3 away: the sender is done; the gateway finishes the upload (or its next start does).
  await db.recordings
    .markUploading(claimed.id)
    .catch((err: unknown) => services.logger.error({ ...ids, code: toCallvaultError(err).code, err }, 'could not mark recording uploading'));
  services.logger.warn(ids, 'imported recording spooled, waiting for S3');
  completion.catch((err: unknown) => {
    const error = toCallvaultError(err);
    // Aborted at shutdown: the spool stays and the next start completes it.
    if (error.code === ErrorCode.ShuttingDown) return;
    services.logger.error({ ...ids, code: error.code, err: error }, 'imported recording could not be completed');
  });
  return { outcome: 'stored', id: claimed.id, recordingSid: claimed.recordingSid, status: 'uploading', durationMs, sizeBytes: output.length + envelope.header.length };
}
