/**
 * One Twilio Media Streams call over k6/ws, framed exactly as Twilio frames it (docs/ingest.md):
 * a signed upgrade (X-Twilio-Signature: base64 HMAC-SHA1 of the stream URL, keyed with the auth token),
 * `connected`, `start` (both tracks, audio/x-mulaw 8 kHz mono), a 20 ms `media` frame per track with its
 * own chunk counter and the stream timestamp, a shared sequence number, then `stop`; the gateway closes
 * with 1000 once the recording is finalised.
 */
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import ws from 'k6/ws';
import { hex } from './env.ts';

export const FRAME_MS = 20;
const TWILIO_RATE = 8000;
const SAMPLES_PER_FRAME = (TWILIO_RATE / 1000) * FRAME_MS;
export const TRACKS = ['inbound', 'outbound'] as const;
export type Track = (typeof TRACKS)[number];

/** G.711 µ-law of one PCM16 sample (bias 0x84, clip 32635, codes stored inverted). */
function mulaw(sample: number): number {
  const negative = sample < 0;
  let magnitude = (negative ? -sample : sample) + 0x84;
  if (magnitude > 32635) magnitude = 32635;
  let exponent = 7;
  for (let mask = 0x4000; (magnitude & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f;
  return ~((negative ? 0x80 : 0) | (exponent << 4) | mantissa) & 0xff;
}

/**
 * The base64 payload of one 20 ms frame of a tone. The frequency must fit a whole number of cycles in
 * 20 ms (a multiple of 50 Hz), so every frame of the call is this same payload and a VU encodes nothing
 * while the call runs.
 */
export function toneFramePayload(frequencyHz: number, amplitude: number): string {
  if (frequencyHz % 50 !== 0) throw new Error(`tone ${frequencyHz} Hz is not a multiple of 50 Hz`);
  const codes = new Uint8Array(SAMPLES_PER_FRAME);
  for (let i = 0; i < SAMPLES_PER_FRAME; i++) {
    codes[i] = mulaw(Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * frequencyHz * i) / TWILIO_RATE)));
  }
  return encoding.b64encode(codes.buffer);
}

/** X-Twilio-Signature of a WebSocket upgrade: a GET, so the URL alone is signed (no body parameters). */
export function twilioSignature(authToken: string, url: string): string {
  return crypto.hmac('sha1', authToken, url, 'base64');
}

/** A Twilio-style SID: the prefix and 32 hex digits. */
export function randomSid(prefix: 'CA' | 'MZ'): string {
  return `${prefix}${hex(crypto.randomBytes(16))}`;
}

export interface CallPlan {
  /** Where the socket connects, e.g. ws://127.0.0.1:8080/twilio/media. */
  url: string;
  /** The URL Twilio signs: the gateway's PUBLIC_URL with the WebSocket scheme, and the same path. */
  signedUrl: string;
  accountSid: string;
  authToken: string;
  callSid: string;
  streamSid: string;
  /** A multiple of 20 ms. */
  durationMs: number;
  /** 0: real time (each frame once its 20 ms are captured, as Twilio sends); more: that far ahead of the clock. */
  leadMs: number;
  /** How long to wait after `stop` for the gateway's close before closing from this side. */
  closeTimeoutMs: number;
  payloads: Record<Track, string>;
  customParameters: Record<string, string>;
  tags: Record<string, string>;
}

export interface CallOutcome {
  /** HTTP status of the upgrade (101), 0 when no response came. */
  status: number;
  opened: boolean;
  /** Media frames sent, all tracks together. */
  mediaFrames: number;
  stopSent: boolean;
  /** The close code the socket ended with; 0 when it never opened. */
  closeCode: number;
  /** `gateway`: the gateway closed; `client`: this side gave up waiting (or a handler failed). */
  closedBy: 'gateway' | 'client' | 'none';
  /** Time from sending `stop` to the gateway's close, ms. */
  stopToCloseMs: number | null;
  error: string | null;
}

export function placeCall(plan: CallPlan): CallOutcome {
  const outcome: CallOutcome = {
    status: 0,
    opened: false,
    mediaFrames: 0,
    stopSent: false,
    closeCode: 0,
    closedBy: 'none',
    stopToCloseMs: null,
    error: null,
  };
  const totalFrames = plan.durationMs / FRAME_MS;
  let sequenceNumber = 0;
  let framesPerTrack = 0;
  let stopSentAt = 0;
  let closingFromClient = false;
  const { streamSid, callSid, accountSid } = plan;

  const send = (socket: ws.Socket, frame: Record<string, unknown>): void => {
    socket.send(JSON.stringify(frame));
  };

  let response: ws.Response | null = null;
  try {
    response = ws.connect(
      plan.url,
      { headers: { 'X-Twilio-Signature': twilioSignature(plan.authToken, plan.signedUrl) }, tags: plan.tags },
      (socket) => {
        socket.on('open', () => {
          outcome.opened = true;
          send(socket, { event: 'connected', protocol: 'Call', version: '1.0.0' });
          send(socket, {
            event: 'start',
            sequenceNumber: String(++sequenceNumber),
            start: {
              accountSid,
              streamSid,
              callSid,
              tracks: [...TRACKS],
              customParameters: plan.customParameters,
              mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: TWILIO_RATE, channels: 1 },
            },
            streamSid,
          });
          const startedAt = Date.now();
          const tick = (): void => {
            if (outcome.stopSent || closingFromClient) return;
            // Frame k covers [20k, 20k + 20) ms of the stream and is sent once that time has passed.
            const due = Math.min(totalFrames, Math.floor((Date.now() - startedAt + plan.leadMs) / FRAME_MS));
            for (; framesPerTrack < due; framesPerTrack++) {
              for (const track of TRACKS) {
                send(socket, {
                  event: 'media',
                  sequenceNumber: String(++sequenceNumber),
                  media: {
                    track,
                    chunk: String(framesPerTrack + 1),
                    timestamp: String(framesPerTrack * FRAME_MS),
                    payload: plan.payloads[track],
                  },
                  streamSid,
                });
                outcome.mediaFrames++;
              }
            }
            if (framesPerTrack === totalFrames) {
              send(socket, { event: 'stop', sequenceNumber: String(++sequenceNumber), stop: { accountSid, callSid }, streamSid });
              outcome.stopSent = true;
              stopSentAt = Date.now();
              socket.setTimeout(() => {
                closingFromClient = true;
                socket.close(1000);
              }, plan.closeTimeoutMs);
            }
          };
          socket.setInterval(tick, FRAME_MS);
          tick();
        });
        socket.on('error', (error) => {
          outcome.error = error.error();
        });
        socket.on('close', (code) => {
          outcome.closeCode = code;
          outcome.closedBy = closingFromClient ? 'client' : 'gateway';
          if (outcome.stopSent && !closingFromClient) outcome.stopToCloseMs = Date.now() - stopSentAt;
        });
      },
    );
  } catch (err) {
    // k6 with `throw: true` (or an older k6) throws on a refused upgrade instead of returning its response.
    outcome.error = String(err);
  }
  if (response) {
    outcome.status = response.status;
    if (response.error && outcome.error === null) outcome.error = response.error;
  }
  return outcome;
}
