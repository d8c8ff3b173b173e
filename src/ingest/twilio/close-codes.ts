/**
 * WebSocket close codes the gateway uses on a Twilio media stream. Twilio does not act on them,
 * but they are what an operator sees in Twilio's debugger and in our logs, so every failure class
 * gets its own code. In every case the stream closes, the audio received so far is kept and the
 * recording is finalised. docs/ingest.md carries the same table for operators.
 */
import { isCallvaultError, ErrorCode } from '../../errors/index.js';

export const TWILIO_CLOSE_CODES = {
  /** The stream sent `stop`; the recording is complete. */
  Normal: 1000,
  /** The gateway is shutting down. */
  GoingAway: 1001,
  /** A frame was larger than the server accepts (uWS closes with this itself for > 64 KiB). */
  MessageTooBig: 1009,
  /** Something failed on our side (pipeline, storage, a bug). */
  InternalError: 1011,
  /** The gateway refused more work (worker queue or memory limits). */
  Overloaded: 1013,
  /** A frame was not JSON, not an object, or did not match its event's schema. */
  Malformed: 4400,
  /** A frame named an event Twilio does not define. */
  UnknownEvent: 4401,
  /** A frame arrived out of protocol order: media before start, a second start, media for a
   * track not announced in start, anything after stop or after an earlier error. */
  ProtocolOrder: 4402,
  /** The stream's accountSid is not the account whose signature opened the socket. */
  AccountMismatch: 4403,
  /** A media payload was not canonical base64 or not 1–1000 whole milliseconds. */
  PayloadInvalid: 4404,
  /** Media ran further ahead of wall-clock time than MAX_AHEAD_OF_CLOCK_SECONDS allows. */
  AheadOfClock: 4405,
  /** The recording options in the custom parameters were invalid, or the client key shorter than 8 characters. */
  RecordingOptionsInvalid: 4406,
  /** A signed stream sent no `start` within STREAM_START_TIMEOUT_SECONDS of opening. */
  StartTimeout: 4407,
  /** The account already has MAX_STREAMS_PER_ACCOUNT streams open (only after open when signatures are not
   * validated: with signatures the upgrade itself is refused with HTTP 429). */
  StreamLimit: 4408,
  /** `start` arrived while free space under DATA_DIR was below SPOOL_MIN_FREE_MIB (new upgrades get HTTP 507). */
  SpoolFull: 4409,
  /** `start` names another call than the stream token in the URL was issued for, or the organisation requires a
   * token and the URL has none (only seen after open when signatures are not validated; otherwise HTTP 403). */
  StreamTokenInvalid: 4410,
  /** `start` names a streamSid this call has already started: a replayed stream. Nothing of it is recorded. */
  StreamReplayed: 4411,
} as const;

export type TwilioCloseCode = (typeof TWILIO_CLOSE_CODES)[keyof typeof TWILIO_CLOSE_CODES];

const CLOSE_CODE_BY_ERROR: Partial<Record<ErrorCode, TwilioCloseCode>> = {
  [ErrorCode.FrameMalformed]: TWILIO_CLOSE_CODES.Malformed,
  [ErrorCode.FrameUnknownEvent]: TWILIO_CLOSE_CODES.UnknownEvent,
  [ErrorCode.FrameOutOfOrder]: TWILIO_CLOSE_CODES.ProtocolOrder,
  [ErrorCode.StreamAccountMismatch]: TWILIO_CLOSE_CODES.AccountMismatch,
  [ErrorCode.SignatureInvalid]: TWILIO_CLOSE_CODES.AccountMismatch,
  [ErrorCode.FramePayloadInvalid]: TWILIO_CLOSE_CODES.PayloadInvalid,
  [ErrorCode.FrameTooLarge]: TWILIO_CLOSE_CODES.MessageTooBig,
  [ErrorCode.StreamAheadOfClock]: TWILIO_CLOSE_CODES.AheadOfClock,
  [ErrorCode.RecordingOptionsInvalid]: TWILIO_CLOSE_CODES.RecordingOptionsInvalid,
  [ErrorCode.ClientKeyWeak]: TWILIO_CLOSE_CODES.RecordingOptionsInvalid,
  [ErrorCode.Overloaded]: TWILIO_CLOSE_CODES.Overloaded,
  // A stream that arrives while PostgreSQL is away cannot get its call row: try again later.
  [ErrorCode.DatabaseUnavailable]: TWILIO_CLOSE_CODES.Overloaded,
  [ErrorCode.StreamStartTimeout]: TWILIO_CLOSE_CODES.StartTimeout,
  [ErrorCode.StreamLimitReached]: TWILIO_CLOSE_CODES.StreamLimit,
  [ErrorCode.SpoolFull]: TWILIO_CLOSE_CODES.SpoolFull,
  [ErrorCode.StreamTokenInvalid]: TWILIO_CLOSE_CODES.StreamTokenInvalid,
  [ErrorCode.StreamReplayed]: TWILIO_CLOSE_CODES.StreamReplayed,
  [ErrorCode.ShuttingDown]: TWILIO_CLOSE_CODES.GoingAway,
};

/** The close code for a failure with this error code; anything unlisted is an internal error. */
export function closeCodeFor(errorCode: ErrorCode): TwilioCloseCode {
  return CLOSE_CODE_BY_ERROR[errorCode] ?? TWILIO_CLOSE_CODES.InternalError;
}

/**
 * Code and reason to close a stream with after `err`. The reason is the stable error code only:
 * it is short enough for a close frame (123 bytes) and never carries peer-supplied text or secrets.
 */
export function closeFrameFor(err: unknown): { code: TwilioCloseCode; reason: string } {
  const errorCode = isCallvaultError(err) ? err.code : ErrorCode.Internal;
  return { code: closeCodeFor(errorCode), reason: errorCode };
}
