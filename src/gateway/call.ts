import { EventEmitter } from 'node:events';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { RecordingOptions } from '../config/index.js';
import type { InputFrame } from '../pipeline/index.js';
import { Recording, retryWhileRetryable, type PauseBehavior, type PauseRecord, type RecordingSummary } from './recording.js';
import { Track, type TrackInfo } from './track.js';
import type { RecordingServices } from './services.js';

export type CallSource = 'twilio' | 'signalwire' | 'livekit';

export interface CallInit {
  dbId: string;
  orgId: string;
  source: CallSource;
  externalId: string;
  metadata: Record<string, unknown>;
  /**
   * False for a later stream of a call that already has its primary (a second `<Stream>`, a replayed upgrade):
   * it never ends (or re-opens) the call's row, and its recordings are marked `primary: false`. Default true.
   */
  primary?: boolean;
}

interface CallEvents {
  /** The summary of the recording the call ended with, if it had one. */
  closed: [RecordingSummary | null];
}

/**
 * A live call: its tracks and its recording. Closing a call closes its tracks and finalises its
 * recording; destroying it aborts the recording. Both are idempotent.
 */
export class Call extends EventEmitter<CallEvents> {
  readonly dbId: string;
  readonly orgId: string;
  readonly source: CallSource;
  readonly externalId: string;
  /** See CallInit.primary. */
  readonly primary: boolean;
  readonly #services: RecordingServices;
  readonly #tracks = new Map<string, Track>();
  readonly #abort = new AbortController();
  #recording: Recording | null = null;
  #starting: Promise<Recording> | null = null;
  readonly #unsettled = new Set<Recording>();
  #mediaEndMs = 0;
  #closePromise: Promise<RecordingSummary | null> | null = null;
  #destroyed = false;
  #closedEmitted = false;
  #failure: CallvaultError | null = null;

  constructor(services: RecordingServices, init: CallInit) {
    super();
    this.#services = services;
    this.dbId = init.dbId;
    this.orgId = init.orgId;
    this.source = init.source;
    this.externalId = init.externalId;
    this.primary = init.primary ?? true;
    // What is posted for the call is staged until it ends; then its documents are sealed (see artifact-vault.ts).
    if (this.primary) services.artifacts?.open(this.dbId);
  }

  get recording(): Recording | null {
    return this.#recording;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get closed(): boolean {
    return this.#closePromise !== null || this.#destroyed;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  track(id: string): Track | undefined {
    return this.#tracks.get(id);
  }

  addTrack(info: TrackInfo): Track {
    const existing = this.#tracks.get(info.id);
    if (existing) return existing;
    const track = new Track(info);
    this.#tracks.set(info.id, track);
    return track;
  }

  /** Where the call's media timeline stands: the end of the furthest frame of any track, in ms. */
  get mediaEndMs(): number {
    return this.#mediaEndMs;
  }

  /**
   * Starts recording from the current point of the call's media timeline (never retroactively; 0 for a
   * recording that starts with the stream). One recording at a time; a call may be recorded again after
   * a stop.
   */
  async startRecording(
    options: RecordingOptions & { enabled: true },
    metadata: Record<string, unknown>,
    scope: { tracks?: readonly string[] } = {},
  ): Promise<Recording> {
    if (this.closed) throw new CallvaultError(ErrorCode.Closed, 'call is closed');
    if (this.#recording || this.#starting) {
      throw new CallvaultError(ErrorCode.Conflict, 'call is already recording');
    }
    const starting = Recording.start(this.#services, {
      orgId: this.orgId,
      callId: this.dbId,
      callExternalId: this.externalId,
      source: this.source === 'livekit' ? 'livekit' : 'gateway',
      options,
      // What GET /calls/{id}/recording serves is never a later stream's recording.
      metadata: this.primary ? metadata : { ...metadata, primary: false },
      originMs: this.#mediaEndMs,
      ...(scope.tracks ? { tracks: scope.tracks } : {}),
    });
    this.#starting = starting;
    try {
      const recording = await starting;
      // The call's first client-key recording gives its transcript, events and metadata their key.
      if (this.primary && recording.clientKey) this.#services.artifacts?.holdClientKey(this.dbId, recording.clientKey);
      // Attached even if the call closed meanwhile: close() waits for this start and then finalises it,
      // before the gateway releases the workers and storage the recording still needs.
      this.#recording = recording;
      this.#unsettled.add(recording);
      recording.once('closed', (summary) => {
        const wasCurrent = this.#recording === recording;
        if (wasCurrent) this.#recording = null;
        this.#unsettled.delete(recording);
        // A recording that failed for good while the call runs ends the call: its stream is closed with 1011
        // and the code, rather than the call carrying on with every later frame silently dropped.
        // A recording destroyed on purpose (deleted through the API) is not a failure of the call: it carries on
        // unrecorded, as after a stop.
        if (wasCurrent && summary.status === 'failed' && !this.closed && recording.failure?.code !== ErrorCode.Destroyed) {
          this.destroy(recording.failure ?? new CallvaultError(ErrorCode.Internal, 'recording failed'));
        }
      });
      if (this.#destroyed) recording.destroy();
      return recording;
    } finally {
      this.#starting = null;
    }
  }

  /**
   * Recordings of this call that have not settled yet: the current one and any still finalising after a
   * stop. Deletion must find these too, or a finalising upload could leave an object behind.
   */
  get unsettledRecordings(): readonly Recording[] {
    return [...this.#unsettled];
  }

  /** Stops the current recording (the call carries on, and may be recorded again). */
  async stopRecording(): Promise<RecordingSummary | null> {
    const recording = this.#recording;
    if (!recording) return null;
    this.#recording = null;
    return recording.close(this.#mediaEndMs);
  }

  pauseRecording(behavior: PauseBehavior): PauseRecord {
    if (!this.#recording) throw new CallvaultError(ErrorCode.Conflict, 'call is not recording');
    return this.#recording.pauseAt(behavior, this.#mediaEndMs);
  }

  resumeRecording(): PauseRecord {
    if (!this.#recording) throw new CallvaultError(ErrorCode.Conflict, 'call is not recording');
    return this.#recording.resumeAt(this.#mediaEndMs);
  }

  /** Per track: its role, format, and the media frames (chunks) and bytes the source sent for it, and their duration. */
  trackStats(): Record<string, { role: string; encoding: string; sampleRate: number; chunks: number; bytes: number; mediaMs: number }> {
    const stats: Record<string, { role: string; encoding: string; sampleRate: number; chunks: number; bytes: number; mediaMs: number }> = {};
    for (const track of this.#tracks.values()) {
      const bytesPerSample = track.encoding === 'pcm_s16le' ? 2 : 1;
      stats[track.id] = {
        role: track.role,
        encoding: track.encoding,
        sampleRate: track.sampleRate,
        chunks: track.framesReceived,
        bytes: track.bytesReceived,
        mediaMs: Math.round((track.bytesReceived / bytesPerSample / track.sampleRate) * 1000),
      };
    }
    return stats;
  }

  /** Routes one frame of a known track (positioned on the call's media timeline) to the recording. */
  pushFrame(frame: InputFrame, arrivedAt: number): void {
    const track = this.#tracks.get(frame.trackId);
    if (!track || !track.accept(frame.data.byteLength) || this.closed) return;
    const bytesPerSample = frame.encoding === 'pcm_s16le' ? 2 : 1;
    const endMs = ((frame.position + frame.data.byteLength / bytesPerSample) * 1000) / frame.sampleRate;
    if (endMs > this.#mediaEndMs) this.#mediaEndMs = endMs;
    this.#recording?.push(frame, arrivedAt);
  }

  flushIfDue(now: number): void {
    this.#recording?.flushIfDue(now);
  }

  close(): Promise<RecordingSummary | null> {
    if (this.#closePromise) return this.#closePromise;
    // Destroyed or abandoned first: its recordings are already aborted or left to the spool; nothing to finish.
    if (this.#destroyed) return (this.#closePromise = Promise.resolve(null));
    this.#closePromise = (async () => {
      for (const track of this.#tracks.values()) track.close();
      await this.#starting?.catch(() => undefined);
      const summary = this.#recording ? await this.#recording.close(this.#mediaEndMs) : null;
      // Recordings stopped earlier may still be finalising: the call is closed only once they are settled.
      await Promise.allSettled([...this.#unsettled].map((recording) => recording.close(this.#mediaEndMs)));
      const endedAt = new Date(this.#services.now());
      // A later stream of the call ending says nothing about the call: its row is the primary stream's to end.
      if (this.primary) {
        // What the source sent per track (chunks = media frames), for call_metadata.json; a failed write is logged.
        await this.#services.db.calls
          .mergeMetadata(this.dbId, { trackStats: this.trackStats() })
          .catch((err: unknown) => this.#services.logger.error({ callSid: this.externalId, err }, 'could not store track counters'));
        await retryWhileRetryable(this.#services, this.#abort.signal, 'could not mark call ended, retrying', { callSid: this.externalId }, () =>
          this.#services.db.calls.end(this.dbId, endedAt),
        ).catch((err: unknown) => this.#services.logger.error({ callSid: this.externalId, err }, 'could not mark call ended'));
        await this.#sealArtifacts();
      }
      this.#emitClosed(summary);
      return summary;
    })();
    return this.#closePromise;
  }

  /** Why the call was destroyed, when it was. */
  get failure(): CallvaultError | null {
    return this.#failure;
  }

  /**
   * Shutdown ran out of time: every recording is left in the spool, unjudged, for the next start to finish.
   * The call row stays active until then.
   */
  abandon(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const track of this.#tracks.values()) track.close();
    this.#abort.abort(new CallvaultError(ErrorCode.ShuttingDown, 'call left to the spool at shutdown'));
    for (const recording of this.#unsettled) recording.abandon();
    if (!this.#closePromise) this.#emitClosed(null);
  }

  destroy(err?: CallvaultError): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#failure = err ?? new CallvaultError(ErrorCode.Destroyed, 'call destroyed');
    if (!this.#closePromise && this.primary) {
      void this.#services.db.calls
        .end(this.dbId, new Date(this.#services.now()))
        .catch((dbErr: unknown) => this.#services.logger.error({ callSid: this.externalId, err: dbErr }, 'could not mark call ended'))
        .then(() => this.#sealArtifacts());
    }
    for (const track of this.#tracks.values()) track.destroy(this.#failure);
    this.#abort.abort(this.#failure);
    for (const recording of this.#unsettled) recording.destroy(this.#failure);
    if (!this.#closePromise) this.#emitClosed(null);
  }

  /** Seals the call's transcript, events and metadata (the client key, if any, is forgotten either way); a failure is logged. */
  async #sealArtifacts(): Promise<void> {
    await this.#services.artifacts
      ?.finish(this.dbId)
      .catch((err: unknown) => this.#services.logger.error({ callSid: this.externalId, err }, 'could not seal the call artifacts'));
  }

  #emitClosed(summary: RecordingSummary | null): void {
    if (this.#closedEmitted) return;
    this.#closedEmitted = true;
    this.emit('closed', summary);
  }
}
