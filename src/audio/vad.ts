/**
 * An energy-based voice-activity detector (not a speech model): interleaved 16-bit PCM is cut into 20 ms
 * frames per channel, and a frame counts as speech when its RMS level is above a fixed threshold
 * (default -40 dBFS). Anything loud enough counts (a tone, music, noise); silence and quiet hiss do not.
 * Streaming: chunks of any length, only a partial frame is carried.
 */
export const VAD_NAME = 'energy-rms-20ms';
export const VAD_FRAME_MS = 20;
export const VAD_DEFAULT_THRESHOLD_DBFS = -40;

export interface EnergyVadResult {
  detector: typeof VAD_NAME;
  thresholdDbfs: number;
  frameMs: number;
  /** Per channel (0 = left/caller, 1 = right/bot), in ms. */
  speechMs: number[];
  /** Per channel, in ms (whole frames analysed). */
  analysedMs: number[];
}

export class EnergyVad {
  readonly #channels: number;
  readonly #frameSamples: number;
  readonly #threshold: number;
  readonly #thresholdDbfs: number;
  readonly #sumSquares: number[];
  readonly #speechFrames: number[];
  #framesDone = 0;
  #filled = 0;
  #carry: Uint8Array = new Uint8Array(0);

  constructor(channels: number, sampleRate: number, thresholdDbfs = VAD_DEFAULT_THRESHOLD_DBFS) {
    this.#channels = channels;
    this.#frameSamples = Math.max(1, Math.round((sampleRate * VAD_FRAME_MS) / 1000));
    this.#thresholdDbfs = thresholdDbfs;
    this.#threshold = 32768 * 10 ** (thresholdDbfs / 20);
    this.#sumSquares = new Array<number>(channels).fill(0);
    this.#speechFrames = new Array<number>(channels).fill(0);
  }

  push(chunk: Uint8Array): void {
    const bytes = this.#carry.length === 0 ? chunk : Buffer.concat([this.#carry, chunk]);
    const frameBytes = 2 * this.#channels;
    const whole = Math.floor(bytes.length / frameBytes);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < whole; i++) {
      for (let c = 0; c < this.#channels; c++) {
        const v = view.getInt16(i * frameBytes + c * 2, true);
        this.#sumSquares[c]! += v * v;
      }
      if (++this.#filled === this.#frameSamples) this.#closeFrame();
    }
    this.#carry = bytes.slice(whole * frameBytes);
  }

  #closeFrame(): void {
    for (let c = 0; c < this.#channels; c++) {
      const rms = Math.sqrt(this.#sumSquares[c]! / this.#frameSamples);
      if (rms > this.#threshold) this.#speechFrames[c]!++;
      this.#sumSquares[c] = 0;
    }
    this.#filled = 0;
    this.#framesDone++;
  }

  result(): EnergyVadResult {
    return {
      detector: VAD_NAME,
      thresholdDbfs: this.#thresholdDbfs,
      frameMs: VAD_FRAME_MS,
      speechMs: this.#speechFrames.map((n) => n * VAD_FRAME_MS),
      analysedMs: this.#speechFrames.map(() => this.#framesDone * VAD_FRAME_MS),
    };
  }
}
