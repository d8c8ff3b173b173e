/**
 * The envelope of a recording: which key seals it, how that key is kept, the container header, and the
 * object's name. Live recordings and imported ones (Twilio's recorder, ElevenLabs) are sealed alike, so a
 * reader never needs to know where a recording came from.
 */
import { randomUUID } from 'node:crypto';
import {
  assertClientKeyStrong,
  createEncryptor,
  deriveNewClientDataKey,
  generateDataKey,
  generateSalt,
  unwrapDataKey,
  wrapDataKey,
  type EncryptorState,
  type KeyMode,
  type SampleFormat,
  type ScryptParams,
} from '../crypto/index.js';
import type { RecordingServices } from './services.js';

/** What a spool manifest of a recording that can be recovered says it is. */
export const RECOVERABLE_MANIFEST_VERSION = 2;

export interface EnvelopeParams {
  orgId: string;
  /** For the object name: the CallSid, room or conversation id. */
  callExternalId: string;
  /** A client key: the data key is derived from it and never stored. Absent: a server key, wrapped. */
  clientKey?: string;
  startedAt: Date;
  sampleRate: number;
  channels: 0 | 1 | 2;
  sampleFormat?: SampleFormat;
}

export interface Envelope {
  keyMode: KeyMode;
  /** Server mode: the master key wrapping the data key. Client mode: '' (the container's key id). */
  keyId: string;
  salt: Uint8Array;
  dataKey: Uint8Array;
  /** Client mode with a passphrase: the scrypt parameters the data key was derived with (in the header). */
  scrypt?: ScryptParams;
  /** The data key wrapped under the current master key (server mode: this is what the row keeps). */
  wrappedKey: Uint8Array;
  objectKey: string;
  header: Uint8Array;
  encryptor: EncryptorState;
}

function safeObjectPart(value: string): string {
  return value.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 100) || 'unknown';
}

/** Object names carry no secret and no guessable sequence: organisation, day, call, random id. */
export function objectKeyFor(orgId: string, startedAt: Date, callExternalId: string): string {
  const day = startedAt.toISOString().slice(0, 10).replaceAll('-', '/');
  return `${orgId}/${day}/${safeObjectPart(callExternalId)}/${randomUUID()}.cvr`;
}

/**
 * Chooses and derives the keys (a too-short client key is refused here, before any audio is accepted). A
 * passphrase client key is stretched with scrypt on libuv's thread pool, off the event loop.
 */
export async function openEnvelope(services: Pick<RecordingServices, 'keyring'>, params: EnvelopeParams): Promise<Envelope> {
  const keyMode: KeyMode = params.clientKey === undefined ? 'server' : 'client';
  if (params.clientKey !== undefined) assertClientKeyStrong(params.clientKey);
  const salt = generateSalt();
  const derived = params.clientKey === undefined ? { dataKey: generateDataKey() } : await deriveNewClientDataKey(params.clientKey, salt);
  const dataKey = derived.dataKey;
  const keyId = keyMode === 'server' ? services.keyring.currentId : '';
  const wrappedKey = wrapDataKey(services.keyring.current, services.keyring.currentId, dataKey);
  const { header, state: encryptor } = createEncryptor({
    dataKey,
    keyMode,
    keyId,
    salt,
    sampleRate: params.sampleRate,
    channels: params.channels,
    ...(params.sampleFormat ? { sampleFormat: params.sampleFormat } : {}),
    ...(derived.scrypt ? { scrypt: derived.scrypt } : {}),
  });
  return {
    keyMode,
    keyId,
    salt,
    dataKey,
    ...(derived.scrypt ? { scrypt: derived.scrypt } : {}),
    wrappedKey,
    objectKey: objectKeyFor(params.orgId, params.startedAt, params.callExternalId),
    header,
    encryptor,
  };
}

/**
 * What the spool manifest holds so that a later start can finish the recording from its spool alone.
 * The data key is wrapped under the master key; for client-key recordings it exists nowhere else on disk
 * and is erased with the spool when the recording completes.
 */
export interface RecordingManifest {
  manifestVersion: typeof RECOVERABLE_MANIFEST_VERSION;
  recordingId: string;
  recordingSid: string;
  orgId: string;
  /** The call row to end once the recording completes; null for an import without a call. */
  callDbId: string | null;
  callExternalId: string;
  bucket: string;
  objectKey: string;
  createdAt: string;
  keyMode: KeyMode;
  keyId: string;
  salt: string;
  /** Client mode with a passphrase: the header's scrypt parameters, so a recovered container carries them too. */
  scrypt?: ScryptParams;
  sampleRate: number;
  channels: 0 | 1 | 2;
  /** Absent for client-key recordings when SPOOL_CLIENT_KEYS=false: such a crashed recording cannot be finished. */
  journalKey?: { masterKeyId: string; wrapped: string };
  /**
   * Present when the data file was written whole and sealed before its upload began (an import): recovery
   * uploads it as it is, with this duration, instead of replaying a journal.
   */
  sealedDurationMs?: number;
}

export interface ManifestParams {
  recordingId: string;
  recordingSid: string;
  orgId: string;
  callDbId: string | null;
  callExternalId: string;
  sampleRate: number;
  channels: 0 | 1 | 2;
  startedAt: Date;
  sealedDurationMs?: number;
}

export function recordingManifest(
  services: Pick<RecordingServices, 'bucket' | 'keyring' | 'spoolClientKeys'>,
  envelope: Envelope,
  params: ManifestParams,
): RecordingManifest {
  const keepKey = envelope.keyMode === 'server' || services.spoolClientKeys !== false;
  return {
    manifestVersion: RECOVERABLE_MANIFEST_VERSION,
    recordingId: params.recordingId,
    recordingSid: params.recordingSid,
    orgId: params.orgId,
    callDbId: params.callDbId,
    callExternalId: params.callExternalId,
    bucket: services.bucket,
    objectKey: envelope.objectKey,
    createdAt: params.startedAt.toISOString(),
    keyMode: envelope.keyMode,
    keyId: envelope.keyId,
    salt: Buffer.from(envelope.salt).toString('base64'),
    ...(envelope.scrypt ? { scrypt: envelope.scrypt } : {}),
    sampleRate: params.sampleRate,
    channels: params.channels,
    ...(keepKey ? { journalKey: { masterKeyId: services.keyring.currentId, wrapped: Buffer.from(envelope.wrappedKey).toString('base64') } } : {}),
    ...(params.sealedDurationMs !== undefined ? { sealedDurationMs: params.sealedDurationMs } : {}),
  };
}

export function isRecoverableManifest(manifest: Record<string, unknown>): manifest is Record<string, unknown> & RecordingManifest {
  return manifest['manifestVersion'] === RECOVERABLE_MANIFEST_VERSION && typeof manifest['recordingId'] === 'string';
}

/** The data key of a recoverable manifest, or null when it was deliberately not kept. */
export function manifestDataKey(manifest: RecordingManifest, keyring: ReadonlyMap<string, Uint8Array>): Uint8Array | null {
  if (!manifest.journalKey) return null;
  return unwrapDataKey(keyring, manifest.journalKey.masterKeyId, Buffer.from(manifest.journalKey.wrapped, 'base64'));
}
