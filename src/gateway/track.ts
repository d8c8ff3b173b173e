import { EventEmitter } from 'node:events';
import type { CallvaultError } from '../errors/index.js';

/** One audio track of a call (Twilio inbound/outbound, a LiveKit participant's track). */
export type TrackRole = 'caller' | 'agent';

export interface TrackInfo {
  id: string;
  role: TrackRole;
  encoding: 'mulaw' | 'alaw' | 'pcm_s16le';
  sampleRate: number;
}

export interface TrackEvents {
  /** Once: with null when the track ended (close), with the reason when it was aborted (destroy). */
  closed: [CallvaultError | null];
}

/**
 * Counts what a track received and gates late frames: once closed or destroyed it accepts nothing more.
 * Its audio is owned by the call's recording, so there is nothing else to finish or abort here.
 */
export class Track extends EventEmitter<TrackEvents> {
  readonly id: string;
  readonly role: TrackRole;
  readonly encoding: 'mulaw' | 'alaw' | 'pcm_s16le';
  readonly sampleRate: number;
  #frames = 0;
  #bytes = 0;
  #closed = false;
  #failure: CallvaultError | null = null;

  constructor(info: TrackInfo) {
    super();
    this.id = info.id;
    this.role = info.role;
    this.encoding = info.encoding;
    this.sampleRate = info.sampleRate;
  }

  get framesReceived(): number {
    return this.#frames;
  }

  get bytesReceived(): number {
    return this.#bytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Counts a frame; returns false once the track is closed so late frames are not recorded. */
  accept(bytes: number): boolean {
    if (this.#closed) return false;
    this.#frames++;
    this.#bytes += bytes;
    return true;
  }

  /** Why the track was destroyed, when it was. */
  get failure(): CallvaultError | null {
    return this.#failure;
  }

  /** Ends the track: later frames are refused. Idempotent; emits `closed` once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('closed', null);
  }

  /** Aborts the track with `err`. Idempotent, and a no-op once closed; emits `closed` once. */
  destroy(err: CallvaultError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failure = err;
    this.emit('closed', err);
  }
}
