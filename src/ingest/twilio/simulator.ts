/**
 * A synthetic Twilio caller: builds the frames Twilio Media Streams would send for a call (exactly
 * as Twilio frames them: 20 ms mu-law chunks, per-track chunk counters, a shared sequence number,
 * timestamps in ms since stream start) and plays them over a signed WebSocket upgrade.
 * The builders are exported on their own so tests can assemble hostile streams.
 * With `carrier: 'signalwire'` it is a SignalWire caller instead: the same frames with SignalWire's identifiers
 * (project id, UUID call and stream SIDs) and an X-SignalWire-Signature upgrade.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import { alawEncode, mulawEncode } from '../../pipeline/mulaw.js';
import { TWILIO_SAMPLE_RATE, type TwilioEvent, type TwilioTrack } from './protocol.js';
import { signStreamUrl } from './signature.js';

export const SIMULATED_FRAME_MS = 20;
const SAMPLES_PER_FRAME = (TWILIO_SAMPLE_RATE / 1000) * SIMULATED_FRAME_MS;
/** The custom parameter the gateway reads recording options from (JSON). */
export const RECORDING_PARAMETER = 'recording';

export function randomCallSid(): string {
  return `CA${randomBytes(16).toString('hex')}`;
}

export function randomStreamSid(): string {
  return `MZ${randomBytes(16).toString('hex')}`;
}

/** SignalWire's call and stream SIDs (and project ids) are UUIDs. */
export function randomSignalWireSid(): string {
  return randomUUID();
}

/** The upgrade header each carrier signs a stream with. */
export const STREAM_SIGNATURE_HEADER = { twilio: 'X-Twilio-Signature', signalwire: 'X-SignalWire-Signature' } as const;

// ---- frame builders: each returns the JSON text of one frame ----

export function buildConnectedMessage(): string {
  return JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' });
}

export interface StartMessageInit {
  sequenceNumber: number;
  accountSid: string;
  callSid: string;
  streamSid: string;
  tracks: TwilioTrack[];
  customParameters?: Record<string, string>;
  mediaFormat?: { encoding: string; sampleRate: number; channels: number };
}

export function buildStartMessage(init: StartMessageInit): string {
  return JSON.stringify({
    event: 'start',
    sequenceNumber: String(init.sequenceNumber),
    start: {
      accountSid: init.accountSid,
      streamSid: init.streamSid,
      callSid: init.callSid,
      tracks: init.tracks,
      customParameters: init.customParameters ?? {},
      mediaFormat: init.mediaFormat ?? { encoding: 'audio/x-mulaw', sampleRate: TWILIO_SAMPLE_RATE, channels: 1 },
    },
    streamSid: init.streamSid,
  });
}

export interface MediaMessageInit {
  sequenceNumber: number;
  streamSid: string;
  track: TwilioTrack;
  chunk: number;
  timestampMs: number;
  /** G.711 bytes, or already-encoded base64 text (sent as is, so tests can send broken base64). */
  payload: Uint8Array | string;
}

export function buildMediaMessage(init: MediaMessageInit): string {
  const payload = typeof init.payload === 'string' ? init.payload : Buffer.from(init.payload).toString('base64');
  return JSON.stringify({
    event: 'media',
    sequenceNumber: String(init.sequenceNumber),
    media: { track: init.track, chunk: String(init.chunk), timestamp: String(init.timestampMs), payload },
    streamSid: init.streamSid,
  });
}

export function buildDtmfMessage(init: { sequenceNumber: number; streamSid: string; digit: string; track?: string }): string {
  return JSON.stringify({
    event: 'dtmf',
    streamSid: init.streamSid,
    sequenceNumber: String(init.sequenceNumber),
    dtmf: { track: init.track ?? 'inbound_track', digit: init.digit },
  });
}

export function buildMarkMessage(init: { sequenceNumber: number; streamSid: string; name: string }): string {
  return JSON.stringify({
    event: 'mark',
    sequenceNumber: String(init.sequenceNumber),
    streamSid: init.streamSid,
    mark: { name: init.name },
  });
}

export function buildStopMessage(init: {
  sequenceNumber: number;
  streamSid: string;
  accountSid: string;
  callSid: string;
}): string {
  return JSON.stringify({
    event: 'stop',
    sequenceNumber: String(init.sequenceNumber),
    stop: { accountSid: init.accountSid, callSid: init.callSid },
    streamSid: init.streamSid,
  });
}

// ---- audio ----

export type SimulatedAudio =
  | { kind: 'tone'; frequencyHz: number; /** Fraction of full scale, default 0.5. */ amplitude?: number }
  /** 8 kHz PCM16 mono; silence after its end. */
  | { kind: 'samples'; samples: Int16Array }
  | { kind: 'silence' };

/** `count` samples of `audio` starting at sample `start`; tones keep their phase across frames. */
export function renderAudio(audio: SimulatedAudio, start: number, count: number): Int16Array {
  const out = new Int16Array(count);
  if (audio.kind === 'tone') {
    const amplitude = (audio.amplitude ?? 0.5) * 32767;
    const step = (2 * Math.PI * audio.frequencyHz) / TWILIO_SAMPLE_RATE;
    for (let i = 0; i < count; i++) out[i] = Math.round(amplitude * Math.sin(step * (start + i)));
  } else if (audio.kind === 'samples') {
    const end = Math.min(count, Math.max(0, audio.samples.length - start));
    if (end > 0) out.set(audio.samples.subarray(start, start + end));
  }
  return out;
}

/**
 * The samples of a PCM16 mono 8 kHz WAV file (the format Twilio streams, so nothing is resampled
 * behind the user's back). Anything else is refused with a message naming what the file holds.
 */
export function readWavPcm16Mono8k(file: Uint8Array, name = 'WAV file'): Int16Array {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const refuse = (why: string): never => {
    throw new CallvaultError(ErrorCode.BadRequest, `${name}: ${why}; expected a PCM 16-bit mono 8000 Hz WAV file`);
  };
  if (bytes.length < 12 || bytes.toString('ascii', 0, 4) !== 'RIFF' || bytes.toString('ascii', 8, 12) !== 'WAVE') {
    refuse('not a RIFF/WAVE file');
  }
  let format: { audioFormat: number; channels: number; sampleRate: number; bitsPerSample: number } | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = bytes.toString('ascii', offset, offset + 4);
    const size = bytes.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (body + size > bytes.length) refuse(`chunk "${id}" runs past the end of the file`);
    if (id === 'fmt ') {
      if (size < 16) refuse('fmt chunk is too short');
      let audioFormat = bytes.readUInt16LE(body);
      // WAVE_FORMAT_EXTENSIBLE names the real format in the first two bytes of its sub-format GUID.
      if (audioFormat === 0xfffe && size >= 40) audioFormat = bytes.readUInt16LE(body + 24);
      format = {
        audioFormat,
        channels: bytes.readUInt16LE(body + 2),
        sampleRate: bytes.readUInt32LE(body + 4),
        bitsPerSample: bytes.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!format) return refuse('data chunk comes before the fmt chunk');
      const { audioFormat, channels, sampleRate, bitsPerSample } = format;
      if (audioFormat !== 1 || channels !== 1 || sampleRate !== TWILIO_SAMPLE_RATE || bitsPerSample !== 16) {
        const kind = audioFormat === 1 ? 'PCM' : `format ${audioFormat}`;
        refuse(`holds ${kind} ${bitsPerSample}-bit, ${channels} channel(s) at ${sampleRate} Hz`);
      }
      if (size % 2 !== 0) refuse('data chunk holds an odd number of bytes');
      const samples = new Int16Array(size / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = bytes.readInt16LE(body + i * 2);
      return samples;
    }
    offset = body + size + (size % 2);
  }
  return refuse('no data chunk');
}

// ---- call plan ----

export interface SimulatedGap {
  track: TwilioTrack;
  /** Both multiples of 20 ms: Twilio drops whole frames, never parts of one. */
  startMs: number;
  durationMs: number;
}

export interface TwilioCallPlan {
  accountSid: string;
  callSid: string;
  streamSid: string;
  /** `both_tracks`: <Start><Stream track="both_tracks">; `connect`: <Connect><Stream>, inbound only. */
  mode: 'both_tracks' | 'connect';
  /** A multiple of 20 ms. */
  durationMs: number;
  inbound: SimulatedAudio;
  outbound: SimulatedAudio;
  customParameters?: Record<string, string>;
  /** Frames not sent; timestamps keep running, as when Twilio loses audio. */
  gaps?: SimulatedGap[];
  dtmf?: { atMs: number; digit: string }[];
  marks?: { atMs: number; name: string }[];
  /** Send the optional `connected` frame first (Twilio does); default true. */
  connected?: boolean;
  /** G.711 law of the media: `mulaw` (`audio/x-mulaw`, PCMU, Twilio's default) or `alaw` (`audio/x-alaw`, PCMA). */
  encoding?: 'mulaw' | 'alaw';
}

export interface PlannedFrame {
  /** Stream time (ms) at which Twilio would send this frame: media once its 20 ms are captured. */
  atMs: number;
  event: TwilioEvent;
  text: string;
}

function checkPlan(plan: TwilioCallPlan): void {
  const bad = (message: string): never => {
    throw new CallvaultError(ErrorCode.BadRequest, message);
  };
  if (!Number.isInteger(plan.durationMs) || plan.durationMs <= 0 || plan.durationMs % SIMULATED_FRAME_MS !== 0) {
    bad(`duration must be a positive multiple of ${SIMULATED_FRAME_MS} ms`);
  }
  for (const gap of plan.gaps ?? []) {
    if (
      !Number.isInteger(gap.startMs) ||
      !Number.isInteger(gap.durationMs) ||
      gap.startMs < 0 ||
      gap.durationMs <= 0 ||
      gap.startMs % SIMULATED_FRAME_MS !== 0 ||
      gap.durationMs % SIMULATED_FRAME_MS !== 0
    ) {
      bad(`gap ${gap.track}:${gap.startMs}:${gap.durationMs}: start and length must be multiples of ${SIMULATED_FRAME_MS} ms`);
    }
    if (plan.mode === 'connect' && gap.track === 'outbound') bad('a <Connect><Stream> call has no outbound track to leave a gap in');
  }
  for (const { digit } of plan.dtmf ?? []) {
    if (!/^[0-9A-D*#]$/.test(digit)) bad(`"${digit}" is not a DTMF digit`);
  }
}

/**
 * Every frame of the call in the order Twilio sends them: connected, start, then per 20 ms the
 * inbound frame and (both_tracks) the outbound frame, with dtmf/mark frames placed before the first
 * media frame at or after their time, and stop. Pure: tests feed it to a session directly.
 */
export function* planTwilioCall(plan: TwilioCallPlan): Generator<PlannedFrame> {
  checkPlan(plan);
  const { streamSid, accountSid, callSid } = plan;
  const tracks: TwilioTrack[] = plan.mode === 'connect' ? ['inbound'] : ['inbound', 'outbound'];
  let sequenceNumber = 0;
  const nextSeq = (): number => ++sequenceNumber;

  if (plan.connected ?? true) yield { atMs: 0, event: 'connected', text: buildConnectedMessage() };
  yield {
    atMs: 0,
    event: 'start',
    text: buildStartMessage({
      sequenceNumber: nextSeq(),
      accountSid,
      callSid,
      streamSid,
      tracks,
      customParameters: plan.customParameters ?? {},
      mediaFormat: { encoding: plan.encoding === 'alaw' ? 'audio/x-alaw' : 'audio/x-mulaw', sampleRate: TWILIO_SAMPLE_RATE, channels: 1 },
    }),
  };
  const encode = plan.encoding === 'alaw' ? alawEncode : mulawEncode;

  const events = [
    ...(plan.dtmf ?? []).map((d) => ({ atMs: d.atMs, kind: 'dtmf' as const, value: d.digit })),
    ...(plan.marks ?? []).map((m) => ({ atMs: m.atMs, kind: 'mark' as const, value: m.name })),
  ].sort((a, b) => a.atMs - b.atMs);
  let nextEvent = 0;
  function* eventsUpTo(ms: number): Generator<PlannedFrame> {
    for (; nextEvent < events.length && (events[nextEvent]?.atMs ?? Infinity) <= ms; nextEvent++) {
      const e = events[nextEvent]!;
      const text =
        e.kind === 'dtmf'
          ? buildDtmfMessage({ sequenceNumber: nextSeq(), streamSid, digit: e.value })
          : buildMarkMessage({ sequenceNumber: nextSeq(), streamSid, name: e.value });
      yield { atMs: Math.max(0, e.atMs), event: e.kind, text };
    }
  }

  const inGap = (track: TwilioTrack, ms: number): boolean =>
    (plan.gaps ?? []).some((g) => g.track === track && ms >= g.startMs && ms < g.startMs + g.durationMs);
  const chunks: Record<TwilioTrack, number> = { inbound: 0, outbound: 0 };

  for (let timestampMs = 0; timestampMs < plan.durationMs; timestampMs += SIMULATED_FRAME_MS) {
    yield* eventsUpTo(timestampMs);
    for (const track of tracks) {
      if (inGap(track, timestampMs)) continue;
      const audio = track === 'inbound' ? plan.inbound : plan.outbound;
      const firstSample = (timestampMs * TWILIO_SAMPLE_RATE) / 1000;
      const payload = encode(renderAudio(audio, firstSample, SAMPLES_PER_FRAME));
      chunks[track] += 1;
      yield {
        atMs: timestampMs + SIMULATED_FRAME_MS,
        event: 'media',
        text: buildMediaMessage({ sequenceNumber: nextSeq(), streamSid, track, chunk: chunks[track], timestampMs, payload }),
      };
    }
  }
  yield* eventsUpTo(Infinity);
  yield {
    atMs: plan.durationMs,
    event: 'stop',
    text: buildStopMessage({ sequenceNumber: nextSeq(), streamSid, accountSid, callSid }),
  };
}

// ---- playing a call against a gateway ----

export interface SimulateTwilioCallOptions
  extends Omit<TwilioCallPlan, 'callSid' | 'streamSid' | 'mode' | 'inbound' | 'outbound'> {
  /** Where to connect, e.g. ws://127.0.0.1:8080/twilio/media (a query string is kept and signed). */
  url: string;
  /**
   * `signalwire`: a SignalWire stream (ws://…/signalwire/media): `accountSid` is the project id, `authToken` the
   * project token, random SIDs are UUIDs and the upgrade carries X-SignalWire-Signature. Default `twilio`.
   */
  carrier?: 'twilio' | 'signalwire';
  authToken: string;
  callSid?: string;
  streamSid?: string;
  mode?: TwilioCallPlan['mode'];
  inbound?: SimulatedAudio;
  outbound?: SimulatedAudio;
  /** Sent as the `recording` custom parameter (JSON), the way a TwiML <Parameter> would carry it. */
  recording?: unknown;
  /** The URL Twilio would have signed when it differs from `url` (PUBLIC_URL behind a proxy). */
  signedUrl?: string;
  /** Sent instead of the computed signature; `null` sends no header. */
  signature?: string | null;
  /** Pace frames at 20 ms like a live call; otherwise send as fast as the socket takes them. */
  realtime?: boolean;
  /** When not realtime: never run more than this far ahead of wall-clock time since start. */
  maxAheadMs?: number;
  /** How long to wait for the server to close after stop; default 10 s. */
  closeTimeoutMs?: number;
}

export interface SimulatedCallResult {
  callSid: string;
  streamSid: string;
  /** The close code of the socket: the server's, or 1006 when we gave up waiting. */
  closeCode: number;
  closeReason: string;
  closedBy: 'server' | 'timeout';
  /** Media frames sent. */
  framesSent: number;
  /** Every frame sent, media or not. */
  messagesSent: number;
}

/**
 * Places one synthetic call: signed upgrade, the planned frames, stop, then waits for the server
 * to close the socket. If the server closes early (it rejected something) sending stops there and
 * the result says how far it got. A refused upgrade rejects with SIGNATURE_INVALID (401/403) or
 * CLOSED, with the HTTP status in `details.httpStatus`.
 */
export async function simulateTwilioCall(options: SimulateTwilioCallOptions): Promise<SimulatedCallResult> {
  const carrier = options.carrier ?? 'twilio';
  const callSid = options.callSid ?? (carrier === 'signalwire' ? randomSignalWireSid() : randomCallSid());
  const streamSid = options.streamSid ?? (carrier === 'signalwire' ? randomSignalWireSid() : randomStreamSid());
  const customParameters = { ...(options.customParameters ?? {}) };
  if (options.recording !== undefined) customParameters[RECORDING_PARAMETER] = JSON.stringify(options.recording);
  const plan: TwilioCallPlan = {
    ...options,
    callSid,
    streamSid,
    mode: options.mode ?? 'both_tracks',
    inbound: options.inbound ?? { kind: 'tone', frequencyHz: 440 },
    outbound: options.outbound ?? { kind: 'tone', frequencyHz: 1000 },
    customParameters,
  };
  // Plan errors surface before anything touches the network.
  checkPlan(plan);

  const signature =
    options.signature === undefined ? signStreamUrl(options.authToken, options.signedUrl ?? options.url) : options.signature;
  const ws = new WebSocket(options.url, {
    headers: signature === null ? {} : { [STREAM_SIGNATURE_HEADER[carrier]]: signature },
    perMessageDeflate: false,
  });

  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => {
      const httpStatus = res.statusCode ?? 0;
      res.resume();
      ws.terminate();
      const code = httpStatus === 401 || httpStatus === 403 ? ErrorCode.SignatureInvalid : ErrorCode.Closed;
      reject(new CallvaultError(code, `gateway refused the stream upgrade with HTTP ${httpStatus}`, { details: { httpStatus } }));
    });
    ws.once('error', (cause) =>
      reject(new CallvaultError(ErrorCode.Closed, `could not connect to ${options.url}`, { cause })),
    );
  });
  ws.on('error', () => undefined);

  let serverClosed = false;
  void closed.then(() => {
    serverClosed = true;
  });
  const startedAt = Date.now();
  let framesSent = 0;
  let messagesSent = 0;
  for (const frame of planTwilioCall(plan)) {
    const leadMs = options.realtime ? 0 : options.maxAheadMs;
    if (leadMs !== undefined) {
      const waitMs = startedAt + frame.atMs - leadMs - Date.now();
      if (waitMs > 0) await Promise.race([delay(waitMs), closed]);
    }
    if (serverClosed || ws.readyState !== WebSocket.OPEN) break;
    const sent = await new Promise<boolean>((resolve) => ws.send(frame.text, (err) => resolve(!err)));
    if (!sent) break;
    messagesSent += 1;
    if (frame.event === 'media') framesSent += 1;
  }

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.closeTimeoutMs ?? 10_000);
  });
  const outcome = await Promise.race([closed, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    ws.terminate();
    const { code, reason } = await closed;
    return { callSid, streamSid, closeCode: code, closeReason: reason, closedBy: 'timeout', framesSent, messagesSent };
  }
  return { callSid, streamSid, closeCode: outcome.code, closeReason: outcome.reason, closedBy: 'server', framesSent, messagesSent };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
