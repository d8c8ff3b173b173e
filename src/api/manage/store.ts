/**
 * Stores a recording that was finished elsewhere (Twilio's recorder, ElevenLabs) like any recording: the
 * same encrypted container (at the audio's own sample rate and channel count, which the header carries, so
 * nothing is resampled), the same metadata row, linked to its call. Keyed on the external id so that
 * retries and concurrent duplicates store it once. MP3 (ElevenLabs) goes into the container undecoded, with
 * sample format `mp3`, and is served back as the same MP3.
 */
import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { RecordingOptions } from '../../config/index.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../../errors/index.js';
import {
  assertClientKeyStrong,
  createEncryptor,
  deriveClientDataKey,
  encryptChunk,
  generateDataKey,
  generateSalt,
  wrapDataKey,
  type KeyMode,
} from '../../crypto/index.js';
import type { RecordingSource } from '../../db/index.js';
import type { Gateway } from '../../gateway/gateway.js';

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
  source: Extract<RecordingSource, 'twilio' | 'elevenlabs'>;
  externalSid: string;
  /** `stereo: false` mixes PCM down to mono; MP3 is never re-encoded, so it stays as it came. */
  options: Pick<RecordingOptions, 'key' | 'stereo'>;
  audio: PcmAudio | Mp3Audio;
  startedAt: Date;
  metadata: Record<string, unknown>;
}

export type StoreFinishedResult =
  | { outcome: 'stored'; id: string; recordingSid: string; durationMs: number; sizeBytes: number }
  | { outcome: 'duplicate'; id: string; recordingSid: string; status: string };

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

function safeObjectPart(value: string): string {
  return value.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 100) || 'unknown';
}

export async function storeFinishedRecording(gateway: Gateway, params: StoreFinishedParams): Promise<StoreFinishedResult> {
  const { db, services } = gateway;
  const existing = await db.imports.findByExternalSid(params.orgId, params.source, params.externalSid);
  if (existing) return { outcome: 'duplicate', ...existing };

  const keyMode: KeyMode = params.options.key === undefined ? 'server' : 'client';
  if (params.options.key !== undefined) assertClientKeyStrong(params.options.key);
  const encoded = 'format' in params.audio ? params.audio : null;
  let channels: 0 | 1 | 2 = params.audio.channels;
  let plaintext = encoded ? encoded.bytes : (params.audio as PcmAudio).pcm;
  if (!encoded && params.options.stereo === false && channels === 2) {
    plaintext = downmix(plaintext);
    channels = 1;
  }
  const sampleRate = params.audio.sampleRate;
  const salt = generateSalt();
  const dataKey = keyMode === 'server' ? generateDataKey() : deriveClientDataKey(params.options.key as string, salt);
  const keyId = keyMode === 'server' ? services.keyring.currentId : '';
  const day = params.startedAt.toISOString().slice(0, 10).replaceAll('-', '/');
  const objectKey = `${params.orgId}/${day}/${safeObjectPart(params.callExternalId)}/${randomUUID()}.cvr`;
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
    objectKey,
    keyMode,
    keyId: keyMode === 'server' ? keyId : null,
    wrappedKey: keyMode === 'server' ? wrapDataKey(services.keyring.current, keyId, dataKey) : null,
    startedAt: params.startedAt,
    metadata: params.metadata,
    externalSid: params.externalSid,
  });
  if (!claimed) {
    const winner = await db.imports.findByExternalSid(params.orgId, params.source, params.externalSid);
    if (!winner) throw new CallvaultError(ErrorCode.Conflict, 'a concurrent import of this recording is being undone, try again', { retryable: true });
    return { outcome: 'duplicate', ...winner };
  }

  let uploaded = false;
  try {
    const { header, state } = createEncryptor({ dataKey, keyMode, keyId, salt, sampleRate, channels, ...(encoded ? { sampleFormat: 'mp3' as const } : {}) });
    const { output } = encryptChunk(state, plaintext, true);
    const body = Buffer.concat([header, output]);
    await new Upload({
      client: services.s3,
      params: {
        Bucket: services.bucket,
        Key: objectKey,
        Body: body,
        ContentType: 'application/vnd.callvault.recording',
        Metadata: { 'recording-sid': claimed.recordingSid, 'key-mode': keyMode },
      },
      queueSize: 2,
    }).done();
    uploaded = true;
    const durationMs = encoded ? encoded.durationMs : Math.round((plaintext.length / (2 * channels) / sampleRate) * 1000);
    await db.recordings.complete(claimed.id, { durationMs, sizeBytes: body.length, endedAt: new Date(services.now()) });
    services.logger.info(
      { recordingSid: claimed.recordingSid, source: params.source, externalSid: params.externalSid, durationMs, sizeBytes: body.length },
      'imported recording stored',
    );
    return { outcome: 'stored', id: claimed.id, recordingSid: claimed.recordingSid, durationMs, sizeBytes: body.length };
  } catch (err) {
    // Undo the claim so the sender's retry starts afresh rather than finding a half-imported recording.
    if (uploaded) await services.s3.send(new DeleteObjectCommand({ Bucket: services.bucket, Key: objectKey })).catch(() => undefined);
    await db.imports.release(claimed.id).catch(() => undefined);
    throw toCallvaultError(err, ErrorCode.StorageUnavailable);
  }
}
