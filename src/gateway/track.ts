/** One audio track of a call (Twilio inbound/outbound, a LiveKit participant's track). */
export type TrackRole = 'caller' | 'agent';

export interface TrackInfo {
  id: string;
  role: TrackRole;
  encoding: 'mulaw' | 'pcm_s16le';
  sampleRate: number;
}

export class Track {
  readonly id: string;
  readonly role: TrackRole;
  readonly encoding: 'mulaw' | 'pcm_s16le';
  readonly sampleRate: number;
  #frames = 0;
  #bytes = 0;
  #closed = false;

  constructor(info: TrackInfo) {
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

  close(): void {
    this.#closed = true;
  }
}
