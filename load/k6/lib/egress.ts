/**
 * LiveKit Track Egress WebSockets as the gateway takes them (docs/livekit.md): a URL the gateway's master
 * key signed, binary pcm_s16le mono frames at the URL's rate.
 *
 * sig = base64url(HMAC-SHA256(K, "/livekit/egress?room=…&roomSid=…&participant=…&track=…&role=…&rate=…&exp=…")),
 * K = HKDF-SHA256(master key, salt empty, info "callvault/egress-url", 32 bytes).
 */
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { setInterval, clearInterval } from 'k6/timers';
import { WebSocket } from 'k6/websockets';
import { asciiBytes } from './env.ts';

export const EGRESS_PATH = '/livekit/egress';
export const EGRESS_FRAME_MS = 20;
const KEY_INFO = 'callvault/egress-url';

/** HKDF-SHA256 (RFC 5869) of the master key with an empty salt, one 32-byte block. */
export function egressUrlKey(masterKeyBase64: string): ArrayBuffer {
  const masterKey = encoding.b64decode(masterKeyBase64, 'std');
  if (masterKey.byteLength !== 32) throw new Error(`EGRESS_MASTER_KEY must be 32 bytes of base64, got ${masterKey.byteLength} bytes`);
  // Extract: an empty salt is HashLen zero bytes.
  const prk = crypto.hmac('sha256', new ArrayBuffer(32), masterKey, 'binary');
  // Expand: T(1) = HMAC(PRK, info || 0x01) is the whole 32-byte key.
  const info = asciiBytes(KEY_INFO);
  const block = new Uint8Array(info.length + 1);
  block.set(info);
  block[info.length] = 1;
  return crypto.hmac('sha256', prk, block.buffer, 'binary');
}

export interface EgressTarget {
  room: string;
  roomSid: string;
  participant: string;
  track: string;
  role: 'caller' | 'agent';
  rate: number;
  /** Unix seconds. */
  exp: number;
}

/** The signed ws(s):// URL of one track's egress socket. */
export function signEgressUrl(wsBaseUrl: string, key: ArrayBuffer, target: EgressTarget): string {
  const fields: Array<[string, string]> = [
    ['room', target.room],
    ['roomSid', target.roomSid],
    ['participant', target.participant],
    ['track', target.track],
    ['role', target.role],
    ['rate', String(target.rate)],
    ['exp', String(target.exp)],
  ];
  const canonical = fields.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join('&');
  const sig = crypto.hmac('sha256', key, `${EGRESS_PATH}?${canonical}`, 'base64rawurl');
  return `${wsBaseUrl}${EGRESS_PATH}?${canonical}&sig=${sig}`;
}

/** One 20 ms frame of a tone as pcm_s16le; a whole number of cycles (multiple of 50 Hz), so every frame is this one. */
export function pcmToneFrame(frequencyHz: number, amplitude: number, rate: number): ArrayBuffer {
  if (frequencyHz % 50 !== 0) throw new Error(`tone ${frequencyHz} Hz is not a multiple of 50 Hz`);
  const samples = (rate * EGRESS_FRAME_MS) / 1000;
  if (!Number.isInteger(samples)) throw new Error(`EGRESS_RATE ${rate} does not make whole 20 ms frames`);
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * frequencyHz * i) / rate));
  return pcm.buffer;
}

export interface TrackOutcome {
  opened: boolean;
  framesSent: number;
  /** The socket stayed open until this side closed it after the last frame (the gateway did not cut it). */
  closedByClient: boolean;
  error: string | null;
}

/**
 * Streams `frames` copies of `frame` in real time (each once its 20 ms have passed, as egress sends decoded
 * audio), then closes with 1000, as Track Egress does when the track ends. Resolves once the socket closed.
 */
export function streamTrack(url: string, frame: ArrayBuffer, frames: number, tags: Record<string, string>): Promise<TrackOutcome> {
  return new Promise((resolve) => {
    const outcome: TrackOutcome = { opened: false, framesSent: 0, closedByClient: false, error: null };
    const socket = new WebSocket(url, null, { tags });
    socket.binaryType = 'arraybuffer';
    let timer: number | null = null;
    const stop = (): void => {
      if (timer !== null) clearInterval(timer);
      timer = null;
    };
    socket.onopen = () => {
      outcome.opened = true;
      const startedAt = Date.now();
      const tick = (): void => {
        // 1 is OPEN (the numeric readyState; k6's WebSocket constructor need not carry the static constants).
        if (socket.readyState !== 1) return stop();
        const due = Math.min(frames, Math.floor((Date.now() - startedAt) / EGRESS_FRAME_MS));
        for (; outcome.framesSent < due; outcome.framesSent++) socket.send(frame);
        if (outcome.framesSent === frames) {
          stop();
          outcome.closedByClient = true;
          socket.close(1000);
        }
      };
      timer = setInterval(tick, EGRESS_FRAME_MS);
    };
    socket.onerror = (event) => {
      outcome.error = event?.error ?? 'websocket error';
    };
    socket.onclose = () => {
      stop();
      resolve(outcome);
    };
  });
}
