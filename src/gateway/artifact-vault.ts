/**
 * A call's artifacts stored encrypted like its audio. What is posted (transcript entries, events) is staged
 * in PostgreSQL while the call is live; when the call ends the gateway builds transcript.json,
 * session_events.json and call_metadata.json and seals each as a container object (format version 2,
 * content type `application/json`) in the recordings' bucket, next to the recording, then drops the staged
 * rows it sealed.
 * - Server key mode: each object has a fresh data key, wrapped under the master key (kept in
 *   call_artifact_objects). Anything posted later is staged and the documents are sealed again at once.
 * - Client key mode: the documents are sealed under the data key of the call's first client-key recording
 *   (derived from the client key and that recording's salt, which the objects' headers carry), held in
 *   memory only while the call is live here. After the call nothing can be added (ARTIFACTS_SEALED).
 * See docs/api.md, "Artifacts at rest", and docs/recording-format.md, "Version 2".
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { decryptObject, generateDataKey, generateSalt, sealDocument, unwrapDataKey, wrapDataKey } from '../crypto/index.js';
import type { ArtifactClientKey, ArtifactSealing } from './artifact-key.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import { retryWhileRetryable } from './retry.js';
import type {
  ArtifactKind,
  ArtifactsRepository,
  Call as CallRow,
  CallEvent,
  JsonObject,
  Recording as RecordingRow,
  SealedArtifact,
  TranscriptEntry,
} from '../db/index.js';
import {
  eventsDocument,
  metadataDocument,
  postedFromDocuments,
  primaryOf,
  transcriptDocument,
  type PostedArtifacts,
} from './artifact-documents.js';
import { objectKeyFor } from './envelope.js';
import { storageError } from './recording-objects.js';
import type { RecordingServices } from './services.js';

/** The media type in the header of every sealed artifact. */
export const ARTIFACT_CONTENT_TYPE = 'application/json';
export const ARTIFACT_FILES: Readonly<Record<ArtifactKind, string>> = { transcript: 'transcript.json', events: 'session_events.json', metadata: 'call_metadata.json' };
const KINDS: readonly ArtifactKind[] = ['transcript', 'events', 'metadata'];

export type { ArtifactClientKey } from './artifact-key.js';

/** How the API sees a call's artifacts. */
export interface ArtifactView {
  keyMode: 'server' | 'client';
  /** The sealed documents (none while a call has not ended, or never sealed). */
  sealed: SealedArtifact[];
}

/** What the edges may do with a call's artifacts (through the port). */
export interface CallArtifacts {
  view(call: CallRow, recordings: readonly RecordingRow[]): Promise<ArtifactView>;
  /** Server key mode: everything posted, from the sealed documents (decrypted) and what is staged since. */
  posted(call: CallRow): Promise<PostedArtifacts>;
  /** A short-lived URL of a sealed (encrypted) document: client key mode's answer. */
  presignedUrl(sealed: SealedArtifact, ttlSeconds: number): Promise<string>;
  /** Deletes the call's sealed objects, then its staged rows and pointers (by the call's callvault id). */
  purge(callId: string): Promise<void>;
}

const STAGED_NONCE_LENGTH = 12;
const STAGED_TAG_LENGTH = 16;
const stagedAad = (keyId: string, callId: string, kind: 'entry' | 'event') => new TextEncoder().encode(`callvault-staged-v1\0${keyId}\0${callId}\0${kind}`);

const json = (value: unknown) => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
const byTime = <T extends { timestamp: string }>(items: T[]): T[] =>
  items.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));

export class ArtifactVault implements CallArtifacts, ArtifactSealing {
  readonly #services: RecordingServices;
  readonly #repo: ArtifactsRepository;
  /** Primary calls live on this gateway: their client key (null: server key mode, or none yet). */
  readonly #live = new Map<string, ArtifactClientKey | null>();
  /** Writes under way per call: a call's final seal waits for them. */
  readonly #writes = new Map<string, Set<Promise<unknown>>>();
  /** Calls whose late writes' seal is being retried. */
  readonly #resealing = new Set<string>();
  /** Seals and purges of one call run one at a time. */
  readonly #locks = new Map<string, Promise<unknown>>();

  readonly #signal: AbortSignal;

  /** `repo`: the undecorated repository (staging rows and sealed pointers). `signal`: the gateway's lifetime. */
  constructor(services: RecordingServices, repo: ArtifactsRepository, signal: AbortSignal) {
    this.#services = services;
    this.#repo = repo;
    this.#signal = signal;
  }

  /**
   * The repository the rest of callvault writes through (same API): a write for a finished client-key call
   * is refused (ARTIFACTS_SEALED); one for a finished server-key call is staged and sealed at once.
   */
  get repository(): ArtifactsRepository {
    const admitted = <T>(callId: string, write: () => Promise<T>): Promise<T> => {
      const run = (async () => {
        await this.#admit(callId);
        const stored = await write();
        // Stored either way (staged, and served from there): a seal that fails now is retried, the write stands.
        if (!this.#live.has(callId)) await this.#resealIfEnded(callId).catch((err: unknown) => this.#resealLater(callId, err));
        return stored;
      })();
      const pending = this.#writes.get(callId) ?? new Set<Promise<unknown>>();
      this.#writes.set(callId, pending);
      pending.add(run);
      void run.then(
        () => this.#settle(callId, run),
        () => this.#settle(callId, run),
      );
      return run;
    };
    return {
      ...this.#repo,
      addTranscriptEntries: (callId, entries) =>
        entries.length === 0
          ? Promise.resolve(0)
          : admitted(callId, () => this.#repo.addTranscriptEntries(callId, entries.map((e) => ({ ...e, sealed: this.#sealStaged(callId, 'entry', e.text) })))),
      addEvents: (callId, events) =>
        events.length === 0
          ? Promise.resolve(0)
          : admitted(callId, () => this.#repo.addEvents(callId, events.map((e) => ({ ...e, sealed: this.#sealStaged(callId, 'event', JSON.stringify(e.data)) })))),
      // Reads see everything posted, sealed or staged, as before sealing existed (server key mode; a client-key
      // call's sealed documents cannot be read here: ARTIFACTS_SEALED).
      transcript: async (callId) => (await this.#posted(callId, await this.#repo.sealed(callId), this.#live.get(callId) ?? null)).entries,
      events: async (callId, type) => {
        const { events } = await this.#posted(callId, await this.#repo.sealed(callId), this.#live.get(callId) ?? null);
        return type === undefined ? events : events.filter((e) => e.type === type);
      },
    };
  }

  /** A staged entry's text / event's data, sealed under the current master key; the AAD binds it to its call and kind. */
  #sealStaged(callId: string, kind: 'entry' | 'event', plaintext: string): { keyId: string; bytes: Uint8Array } {
    const { currentId, current } = this.#services.keyring;
    const nonce = randomBytes(STAGED_NONCE_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', current, nonce, { authTagLength: STAGED_TAG_LENGTH });
    cipher.setAAD(stagedAad(currentId, callId, kind));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { keyId: currentId, bytes: new Uint8Array(Buffer.concat([nonce, body, cipher.getAuthTag()])) };
  }

  #openStaged(callId: string, kind: 'entry' | 'event', sealed: { keyId: string; bytes: Uint8Array }): string {
    const masterKey = this.#services.keyring.all.get(sealed.keyId);
    if (!masterKey) throw new CallvaultError(ErrorCode.KeyUnknown, 'master key id is not in the keyring', { details: { keyId: sealed.keyId } });
    const { bytes } = sealed;
    const decipher = createDecipheriv('aes-256-gcm', masterKey, bytes.subarray(0, STAGED_NONCE_LENGTH), { authTagLength: STAGED_TAG_LENGTH });
    decipher.setAAD(stagedAad(sealed.keyId, callId, kind));
    decipher.setAuthTag(bytes.subarray(bytes.length - STAGED_TAG_LENGTH));
    try {
      return Buffer.concat([decipher.update(bytes.subarray(STAGED_NONCE_LENGTH, bytes.length - STAGED_TAG_LENGTH)), decipher.final()]).toString('utf8');
    } catch (cause) {
      throw new CallvaultError(ErrorCode.KeyUnwrapFailed, 'a staged artifact failed authentication', { cause, details: { keyId: sealed.keyId, kind } });
    }
  }

  /** What is staged for the call, opened (rows written before staging was sealed are read as they are). */
  async #stagedEntries(callId: string): Promise<TranscriptEntry[]> {
    return (await this.#repo.transcript(callId)).map(({ sealed, ...e }) => (sealed ? { ...e, text: this.#openStaged(callId, 'entry', sealed) } : e));
  }

  async #stagedEvents(callId: string, type?: string): Promise<CallEvent[]> {
    return (await this.#repo.events(callId, type)).map(({ sealed, ...e }) => (sealed ? { ...e, data: JSON.parse(this.#openStaged(callId, 'event', sealed)) as JsonObject } : e));
  }

  #settle(callId: string, run: Promise<unknown>): void {
    const pending = this.#writes.get(callId);
    pending?.delete(run);
    if (pending?.size === 0) this.#writes.delete(callId);
  }

  /** A primary call opened on this gateway: what is posted for it is staged until it ends. */
  open(callId: string): void {
    if (!this.#live.has(callId)) this.#live.set(callId, null);
  }

  /** The first client-key recording of a live call gives the call its key (kept in memory until the call ends). */
  holdClientKey(callId: string, key: ArtifactClientKey): void {
    if (this.#live.has(callId) && this.#live.get(callId) === null) this.#live.set(callId, { ...key, dataKey: Uint8Array.from(key.dataKey) });
  }

  /**
   * The call ended: writes under way land, the documents are sealed, and the client key is forgotten. While
   * object storage or the database is unavailable the seal is retried in the background (the key stays in
   * memory until it succeeds or the gateway stops); what is posted meanwhile is staged and sealed with it.
   */
  async finish(callId: string): Promise<void> {
    if (!this.#live.has(callId)) return;
    const key = this.#live.get(callId) ?? null;
    const forget = () => {
      key?.dataKey.fill(0);
      this.#live.delete(callId);
    };
    // A destroyed gateway seals nothing more: what is staged stays staged (docs/api.md, "Artifacts at rest").
    if (this.#signal.aborted) return forget();
    const seal = async () => {
      // Until a seal finds no write that started meanwhile: then nothing staged is left behind unsealed.
      do {
        await Promise.allSettled([...(this.#writes.get(callId) ?? [])]);
        await this.#locked(callId, () => this.#seal(callId, key));
      } while ((this.#writes.get(callId)?.size ?? 0) > 0);
    };
    try {
      await seal();
      forget();
    } catch (err) {
      const error = toCallvaultError(err);
      if (!error.retryable || this.#signal.aborted) {
        forget();
        throw error;
      }
      this.#services.logger.warn({ callId, code: error.code, err: error }, 'could not seal the call artifacts yet, retrying');
      void retryWhileRetryable(this.#services, this.#signal, 'could not seal the call artifacts, retrying', { callId }, seal)
        .catch((retryErr: unknown) => {
          // Stopping is not a failure of the seal: what is staged stays staged, as at any shutdown.
          if (this.#signal.aborted) this.#services.logger.warn({ callId }, 'gateway stopped before the call artifacts could be sealed');
          else this.#services.logger.error({ callId, err: retryErr }, 'could not seal the call artifacts');
        })
        .finally(forget);
    }
  }

  async #admit(callId: string): Promise<void> {
    if (this.#live.has(callId)) return;
    const state = await this.#repo.callOf(callId);
    // No such call: the insert below fails as it always did.
    if (!state || !state.ended) return;
    const call = await this.#services.db.calls.get(state.orgId, callId);
    if (!call) return;
    const { keyMode } = await this.view(call, await this.#recordingsOf(call));
    if (keyMode === 'client') {
      throw new CallvaultError(ErrorCode.ArtifactsSealed, "the call has ended and its artifacts are sealed under the client key, which the gateway no longer holds", {
        details: { keyMode },
      });
    }
  }

  /** Late writes whose seal failed: retried in the background while retryable (once per call at a time). */
  #resealLater(callId: string, err: unknown): void {
    const error = toCallvaultError(err);
    if (!error.retryable || this.#signal.aborted) {
      this.#services.logger.error({ callId, err: error }, 'could not seal the call artifacts');
      return;
    }
    this.#services.logger.warn({ callId, code: error.code, err: error }, 'could not seal the call artifacts yet, retrying');
    if (this.#resealing.has(callId)) return;
    this.#resealing.add(callId);
    void retryWhileRetryable(this.#services, this.#signal, 'could not seal the call artifacts, retrying', { callId }, () => this.#resealIfEnded(callId))
      .catch((retryErr: unknown) => {
        if (this.#signal.aborted) this.#services.logger.warn({ callId }, 'gateway stopped before the call artifacts could be sealed');
        else this.#services.logger.error({ callId, err: retryErr }, 'could not seal the call artifacts');
      })
      .finally(() => this.#resealing.delete(callId));
  }

  async #resealIfEnded(callId: string): Promise<void> {
    const state = await this.#repo.callOf(callId);
    if (!state?.ended) return;
    await this.#locked(callId, () => this.#seal(callId, null));
  }

  async view(call: CallRow, recordings: readonly RecordingRow[]): Promise<ArtifactView> {
    const sealed = await this.#repo.sealed(call.id);
    const live = this.#live.get(call.id);
    const keyMode = sealed[0]?.keyMode ?? (live ? 'client' : (primaryOf(recordings)?.keyMode ?? 'server'));
    return { keyMode, sealed };
  }

  async posted(call: CallRow): Promise<PostedArtifacts> {
    const sealed = await this.#repo.sealed(call.id);
    return this.#posted(call.id, sealed, null);
  }

  /** Sealed documents (decrypted with the server keyring, or the held client key) and what is staged since, in time order. */
  async #posted(callId: string, sealed: readonly SealedArtifact[], clientKey: ArtifactClientKey | null): Promise<PostedArtifacts & { upTo: { entryId: string | null; eventId: string | null } }> {
    const documentOf = async (kind: ArtifactKind): Promise<unknown> => {
      const object = sealed.find((s) => s.kind === kind);
      if (!object) return null;
      if (object.keyMode === 'client' && !clientKey) {
        throw new CallvaultError(ErrorCode.ArtifactsSealed, 'the artifacts are sealed under the client key', { details: { keyMode: 'client' } });
      }
      const bytes = await this.#read(object);
      const { plaintext } = await decryptObject(bytes, () => (object.keyMode === 'client' ? clientKey!.dataKey : this.#dataKeyOf(object)));
      return JSON.parse(new TextDecoder().decode(plaintext)) as unknown;
    };
    const fromSealed = postedFromDocuments(await documentOf('transcript'), await documentOf('events'));
    const stagedEntries = await this.#stagedEntries(callId);
    const stagedEvents = await this.#stagedEvents(callId);
    const maxId = (rows: readonly { rowId?: string }[]) =>
      rows.reduce<string | null>((max, r) => (r.rowId !== undefined && (max === null || BigInt(r.rowId) > BigInt(max)) ? r.rowId : max), null);
    return {
      entries: byTime([...fromSealed.entries, ...stagedEntries]),
      events: byTime([...fromSealed.events, ...stagedEvents]),
      upTo: { entryId: maxId(stagedEntries), eventId: maxId(stagedEvents) },
    };
  }

  #dataKeyOf(object: SealedArtifact): Uint8Array {
    if (!object.keyId || !object.wrappedKey) throw new CallvaultError(ErrorCode.KeyUnknown, 'sealed artifact has no wrapped data key', { details: { kind: object.kind } });
    return unwrapDataKey(this.#services.keyring.all, object.keyId, object.wrappedKey);
  }

  async #read(object: SealedArtifact): Promise<Uint8Array> {
    try {
      const got = await this.#services.s3.send(new GetObjectCommand({ Bucket: object.bucket, Key: object.objectKey }));
      return await got.Body!.transformToByteArray();
    } catch (err) {
      throw storageError(err, 'read a sealed artifact');
    }
  }

  presignedUrl(sealed: SealedArtifact, ttlSeconds: number): Promise<string> {
    return getSignedUrl(this.#services.s3, new GetObjectCommand({ Bucket: sealed.bucket, Key: sealed.objectKey }), {
      expiresIn: ttlSeconds,
      signingDate: new Date(this.#services.now()),
    });
  }

  purge(callId: string): Promise<void> {
    return this.#locked(callId, async () => {
      // Objects first, rows last: a failure half-way leaves the pointers to retry the deletion with.
      for (const object of await this.#repo.sealed(callId)) await this.#deleteObject(object);
      await this.#repo.deleteAll(callId);
    });
  }

  async #deleteObject(object: Pick<SealedArtifact, 'bucket' | 'objectKey'>): Promise<void> {
    try {
      await this.#services.s3.send(new DeleteObjectCommand({ Bucket: object.bucket, Key: object.objectKey }));
    } catch (err) {
      throw storageError(err, 'delete a sealed artifact');
    }
  }

  #locked<T>(callId: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(callId) ?? Promise.resolve();
    const run = previous.then(task, task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(callId, tail);
    void tail.then(() => {
      if (this.#locks.get(callId) === tail) this.#locks.delete(callId);
    });
    return run;
  }

  async #recordingsOf(call: CallRow): Promise<RecordingRow[]> {
    const page = await this.#services.db.recordings.list(call.orgId, { callSid: call.externalId, page: 0, limit: 1000 });
    return page.rows.filter((r) => r.callId === call.id).sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime());
  }

  /** Builds and seals the three documents from what is sealed and staged, then swaps them in. */
  async #seal(callId: string, clientKey: ArtifactClientKey | null): Promise<void> {
    const state = await this.#repo.callOf(callId);
    if (!state) return;
    const call = await this.#services.db.calls.get(state.orgId, callId);
    if (!call) return;
    const recordings = await this.#recordingsOf(call);
    const sealed = await this.#repo.sealed(callId);
    const primary = primaryOf(recordings);
    const keyMode = sealed[0]?.keyMode ?? (clientKey ? 'client' : (primary?.keyMode ?? 'server'));
    if (keyMode === 'client' && !clientKey) {
      // A client-key call that ended where its key was not held (another gateway, or one that crashed): what is
      // staged stays staged; its documents cannot be sealed without the key.
      this.#services.logger.warn({ callSid: call.externalId }, 'client-key call ended without its key here: artifacts left unsealed');
      return;
    }
    const posted = await this.#posted(callId, sealed, clientKey);
    // Server key mode with nothing posted: the documents hold only what the call and recording rows say, which the
    // API builds from them anyway; there is nothing to protect, so no objects. Client key mode always seals (its
    // GETs answer with the objects).
    if (keyMode === 'server' && sealed.length === 0 && posted.entries.length === 0 && posted.events.length === 0) return;
    const documents: Record<ArtifactKind, unknown> = {
      transcript: transcriptDocument(call, recordings, posted),
      events: eventsDocument(call, recordings, posted),
      // No voice-activity figures in the sealed copy: the audio may still be uploading. The API adds them (server key mode).
      metadata: metadataDocument(call, recordings, posted, null),
    };
    const folder = posix.dirname(primary?.objectKey ?? objectKeyFor(call.orgId, call.startedAt, call.externalId));
    const written: Omit<SealedArtifact, 'sealedAt'>[] = [];
    try {
      for (const kind of KINDS) {
        const serverKey = keyMode === 'server' ? { dataKey: generateDataKey(), keyId: this.#services.keyring.currentId } : null;
        const object = sealDocument(
          serverKey
            ? { dataKey: serverKey.dataKey, keyMode: 'server', keyId: serverKey.keyId, salt: generateSalt(), contentType: ARTIFACT_CONTENT_TYPE }
            : { dataKey: clientKey!.dataKey, keyMode: 'client', keyId: '', salt: clientKey!.salt, ...(clientKey!.scrypt ? { scrypt: clientKey!.scrypt } : {}), contentType: ARTIFACT_CONTENT_TYPE },
          json(documents[kind]),
        );
        const objectKey = `${folder}/${randomUUID()}.${ARTIFACT_FILES[kind]}.cvr`;
        try {
          await this.#services.s3.send(
            new PutObjectCommand({ Bucket: this.#services.bucket, Key: objectKey, Body: object, ContentType: 'application/vnd.callvault.recording' }),
          );
        } catch (err) {
          throw storageError(err, 'store a sealed artifact');
        }
        written.push({
          kind,
          bucket: this.#services.bucket,
          objectKey,
          keyMode,
          keyId: serverKey ? serverKey.keyId : null,
          wrappedKey: serverKey ? wrapDataKey(this.#services.keyring.current, serverKey.keyId, serverKey.dataKey) : null,
          sizeBytes: object.length,
        });
      }
    } catch (err) {
      for (const object of written) {
        await this.#deleteObject(object).catch((rmErr: unknown) => this.#services.logger.error({ callSid: call.externalId, err: rmErr }, 'could not remove a half-sealed artifact'));
      }
      throw err;
    }
    const replaced = await this.#repo.commitSeal(callId, written, posted.upTo);
    for (const object of replaced) {
      // The new documents are in place; an old object left behind is only storage, and is logged.
      await this.#deleteObject(object).catch((err: unknown) => this.#services.logger.error({ callSid: call.externalId, err }, 'could not remove a replaced artifact'));
    }
  }
}
