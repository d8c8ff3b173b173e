/**
 * One Twilio media stream, as a state machine with no I/O: the server feeds it text frames, it
 * validates them against the protocol and everything seen so far, and passes well-formed events to
 * a sink. Any violation throws a CallvaultError and kills the session, because once a stream has
 * lied about order, timing or identity nothing it sends afterwards can be trusted into a recording.
 */
import { CallvaultError, ErrorCode, toCallvaultError } from '../../errors/index.js';
import {
  decodeMediaPayload,
  mediaPayloadDurationMs,
  parseTwilioMessage,
  type StreamDialect,
  type TwilioMediaFormat,
  type TwilioMessage,
  type TwilioTrack,
} from './protocol.js';

export interface TwilioStartInfo {
  streamSid: string;
  callSid: string;
  accountSid: string;
  tracks: TwilioTrack[];
  customParameters: Record<string, string>;
  mediaFormat: TwilioMediaFormat;
}

export interface TwilioMediaEvent {
  track: TwilioTrack;
  /** Milliseconds since the stream started, as Twilio stamped it. */
  timestampMs: number;
  chunk: number;
  /** 8 kHz mono G.711 (µ-law or A-law, as `start.mediaFormat.encoding` says). */
  payload: Buffer;
}

export interface TwilioDtmfEvent {
  track: string;
  digit: string;
  /** Only when the frame carried one; Twilio's dtmf frames usually do not. */
  timestampMs?: number;
}

export interface TwilioSessionSink {
  onStart(info: TwilioStartInfo): void;
  onMedia(media: TwilioMediaEvent): void;
  onDtmf(e: TwilioDtmfEvent): void;
  onMark(e: { name: string }): void;
  onStop(e: { reason: 'stop' }): void;
}

export interface TwilioStreamSessionOptions {
  /** Milliseconds; injected so tests control time. */
  now: () => number;
  /** How far media timestamps may run ahead of the wall-clock time elapsed since `start`. */
  maxAheadOfClockMs: number;
  /**
   * The account whose signature opened the socket. `null` accepts any account, for deployments
   * that run with TWILIO_SIGNATURE_VALIDATION=false.
   */
  expectedAccountSid: string | null;
  /** Whose identifiers the frames carry (SignalWire: UUIDs); Twilio's when unset. */
  dialect?: StreamDialect;
}

export type TwilioSessionState = 'awaiting-start' | 'streaming' | 'stopped' | 'failed';

interface TrackProgress {
  lastChunk: number;
  lastTimestampMs: number;
}

export class TwilioStreamSession {
  readonly #options: TwilioStreamSessionOptions;
  readonly #sink: TwilioSessionSink;
  #state: TwilioSessionState = 'awaiting-start';
  #connectedSeen = false;
  #lastSequenceNumber = 0;
  #start: TwilioStartInfo | undefined;
  #clockAtStartMs = 0;
  readonly #progress = new Map<TwilioTrack, TrackProgress>();

  constructor(options: TwilioStreamSessionOptions, sink: TwilioSessionSink) {
    if (!Number.isFinite(options.maxAheadOfClockMs) || options.maxAheadOfClockMs < 0) {
      throw new CallvaultError(ErrorCode.ConfigInvalid, 'maxAheadOfClockMs must be a non-negative number');
    }
    this.#options = options;
    this.#sink = sink;
  }

  get state(): TwilioSessionState {
    return this.#state;
  }

  /** What `start` announced, once it has arrived. */
  get startInfo(): Readonly<TwilioStartInfo> | undefined {
    return this.#start;
  }

  /**
   * Validates one text frame and forwards it to the sink. Throws a CallvaultError on any
   * violation (see docs/ingest.md for codes); after that every call throws FRAME_OUT_OF_ORDER.
   */
  handle(text: string): void {
    if (this.#state === 'failed') {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'frame after the stream already failed');
    }
    try {
      if (this.#state === 'stopped') {
        throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'frame after stop');
      }
      this.#dispatch(parseTwilioMessage(text, this.#options.dialect));
    } catch (err) {
      this.#state = 'failed';
      throw toCallvaultError(err);
    }
  }

  #dispatch(message: TwilioMessage): void {
    if (message.event === 'connected') {
      if (this.#state !== 'awaiting-start' || this.#connectedSeen) {
        throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'connected must come once, before start');
      }
      this.#connectedSeen = true;
      return;
    }

    this.#checkSequence(message.sequenceNumber);

    if (message.event === 'start') {
      this.#handleStart(message);
      return;
    }

    const start = this.#requireStarted(message.event);
    if (message.streamSid !== undefined && message.streamSid !== start.streamSid) {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, `${message.event} frame names another stream`);
    }

    switch (message.event) {
      case 'media':
        this.#handleMedia(message.media, start);
        return;
      case 'dtmf': {
        const { track, digit, timestamp } = message.dtmf;
        this.#sink.onDtmf(timestamp === undefined ? { track, digit } : { track, digit, timestampMs: timestamp });
        return;
      }
      case 'mark':
        this.#sink.onMark({ name: message.mark.name });
        return;
      case 'stop':
        this.#checkAccount(message.stop.accountSid);
        if (message.stop.callSid !== start.callSid) {
          throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'stop names another call');
        }
        this.#state = 'stopped';
        this.#sink.onStop({ reason: 'stop' });
        return;
    }
  }

  #handleStart(message: Extract<TwilioMessage, { event: 'start' }>): void {
    if (this.#state !== 'awaiting-start') {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'second start on one stream');
    }
    const { start } = message;
    if (message.streamSid !== undefined && message.streamSid !== start.streamSid) {
      throw new CallvaultError(ErrorCode.FrameMalformed, 'start frame names two different streams');
    }
    this.#checkAccount(start.accountSid);
    this.#start = {
      streamSid: start.streamSid,
      callSid: start.callSid,
      accountSid: start.accountSid,
      tracks: [...start.tracks],
      customParameters: { ...start.customParameters },
      mediaFormat: start.mediaFormat,
    };
    this.#clockAtStartMs = this.#options.now();
    this.#state = 'streaming';
    this.#sink.onStart({ ...this.#start, tracks: [...this.#start.tracks], customParameters: { ...start.customParameters } });
  }

  #handleMedia(
    media: Extract<TwilioMessage, { event: 'media' }>['media'],
    start: TwilioStartInfo,
  ): void {
    if (!start.tracks.includes(media.track)) {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'media for a track not announced in start', {
        details: { track: media.track, tracks: start.tracks },
      });
    }
    // Alignment places each frame by its timestamp; a track that goes backwards would overwrite audio.
    const progress = this.#progress.get(media.track);
    if (progress && media.chunk <= progress.lastChunk) {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'media chunk numbers must increase per track', {
        details: { track: media.track, chunk: media.chunk, previousChunk: progress.lastChunk },
      });
    }
    if (progress && media.timestamp < progress.lastTimestampMs) {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'media timestamps must not go backwards per track', {
        details: { track: media.track, timestampMs: media.timestamp, previousTimestampMs: progress.lastTimestampMs },
      });
    }

    const payload = decodeMediaPayload(media.payload);
    const durationMs = mediaPayloadDurationMs(payload.length);
    const elapsedMs = this.#options.now() - this.#clockAtStartMs;
    const allowedEndMs = elapsedMs + this.#options.maxAheadOfClockMs;
    if (media.timestamp + durationMs > allowedEndMs) {
      throw new CallvaultError(ErrorCode.StreamAheadOfClock, 'media runs too far ahead of wall-clock time', {
        details: {
          track: media.track,
          mediaEndMs: media.timestamp + durationMs,
          elapsedMs,
          maxAheadOfClockMs: this.#options.maxAheadOfClockMs,
        },
      });
    }

    this.#progress.set(media.track, { lastChunk: media.chunk, lastTimestampMs: media.timestamp });
    this.#sink.onMedia({ track: media.track, timestampMs: media.timestamp, chunk: media.chunk, payload });
  }

  #requireStarted(event: string): TwilioStartInfo {
    if (this.#state !== 'streaming' || this.#start === undefined) {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, `${event} before start`);
    }
    return this.#start;
  }

  #checkAccount(accountSid: string): void {
    const expected = this.#options.expectedAccountSid ?? this.#start?.accountSid;
    if (expected !== undefined && accountSid !== expected) {
      throw new CallvaultError(ErrorCode.StreamAccountMismatch, 'stream belongs to another Twilio account', {
        details: { accountSid, expectedAccountSid: expected },
      });
    }
  }

  #checkSequence(sequenceNumber: number | undefined): void {
    if (sequenceNumber === undefined) return;
    if (sequenceNumber <= this.#lastSequenceNumber) {
      throw new CallvaultError(ErrorCode.FrameOutOfOrder, 'sequence numbers must increase', {
        details: { sequenceNumber, previousSequenceNumber: this.#lastSequenceNumber },
      });
    }
    this.#lastSequenceNumber = sequenceNumber;
  }
}
