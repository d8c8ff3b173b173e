/**
 * Every error callvault raises carries a stable `code` (match on it, never on the message),
 * the underlying `cause`, and whether retrying the same operation may succeed.
 */
export const ErrorCode = {
  ConfigInvalid: 'CONFIG_INVALID',
  // ingest
  FrameMalformed: 'FRAME_MALFORMED',
  FrameUnknownEvent: 'FRAME_UNKNOWN_EVENT',
  FrameOutOfOrder: 'FRAME_OUT_OF_ORDER',
  FramePayloadInvalid: 'FRAME_PAYLOAD_INVALID',
  FrameTooLarge: 'FRAME_TOO_LARGE',
  StreamAheadOfClock: 'STREAM_AHEAD_OF_CLOCK',
  StreamAccountMismatch: 'STREAM_ACCOUNT_MISMATCH',
  SignatureInvalid: 'SIGNATURE_INVALID',
  RecordingOptionsInvalid: 'RECORDING_OPTIONS_INVALID',
  ClientKeyWeak: 'CLIENT_KEY_WEAK',
  Overloaded: 'OVERLOADED',
  StreamStartTimeout: 'STREAM_START_TIMEOUT',
  StreamLimitReached: 'STREAM_LIMIT_REACHED',
  SpoolFull: 'SPOOL_FULL',
  // A Twilio stream token (`?token=` on the stream URL) missing where required, invalid, expired, or for another call.
  StreamTokenInvalid: 'STREAM_TOKEN_INVALID',
  // A `start` naming a streamSid this call already started: a replayed stream.
  StreamReplayed: 'STREAM_REPLAYED',
  // crypto
  ContainerInvalid: 'CONTAINER_INVALID',
  ContainerTruncated: 'CONTAINER_TRUNCATED',
  ContainerTampered: 'CONTAINER_TAMPERED',
  KeyUnwrapFailed: 'KEY_UNWRAP_FAILED',
  KeyUnknown: 'KEY_UNKNOWN',
  // storage
  StorageUnavailable: 'STORAGE_UNAVAILABLE',
  UploadFailed: 'UPLOAD_FAILED',
  SpoolFailed: 'SPOOL_FAILED',
  // database
  DatabaseUnavailable: 'DATABASE_UNAVAILABLE',
  // pipeline
  PipelineFailed: 'PIPELINE_FAILED',
  // lifecycle
  Destroyed: 'DESTROYED',
  Closed: 'CLOSED',
  ShuttingDown: 'SHUTTING_DOWN',
  // api
  Unauthorized: 'UNAUTHORIZED',
  /** The API key is valid but lacks the scope the route needs (or is bound to a user and the route is organisation-wide). */
  Forbidden: 'FORBIDDEN',
  /** Too many control requests for one call in the organisation's window; `details.retryAfterSeconds`. */
  RateLimited: 'RATE_LIMITED',
  NotFound: 'NOT_FOUND',
  Conflict: 'CONFLICT',
  BadRequest: 'BAD_REQUEST',
  PayloadTooLarge: 'PAYLOAD_TOO_LARGE',
  RangeNotSatisfiable: 'RANGE_NOT_SATISFIABLE',
  /** `?track=` of a recording that mixed its tracks into one channel (mono, or MP3): they were not kept apart. */
  TracksNotSeparate: 'TRACKS_NOT_SEPARATE',
  /** A signed playback URL (`/playback/…`) that is malformed, not signed by this gateway, or for a track or lifetime it does not allow. */
  PlaybackUrlInvalid: 'PLAYBACK_URL_INVALID',
  /** A signed playback URL past its expiry: ask for a new one (`POST /calls/{callId}/playback-url`). */
  PlaybackUrlExpired: 'PLAYBACK_URL_EXPIRED',
  /**
   * A transcript entry or event for a finished client-key call: its documents are sealed under the client
   * key, which the gateway no longer holds, so nothing can be added to them.
   */
  ArtifactsSealed: 'ARTIFACTS_SEALED',
  /** A client-key call's transcript, events or metadata asked for before the call ended (they are sealed when it ends). */
  ArtifactsNotSealed: 'ARTIFACTS_NOT_SEALED',
  Internal: 'INTERNAL',
  /**
   * A control request for a call or recording another gateway of the fleet holds, which could not be handed to it:
   * that gateway is dead (stale heartbeat), registered no internal address, or did not answer in time. Retryable.
   */
  OwnerUnavailable: 'OWNER_UNAVAILABLE',
  // A crashed client-key recording whose data key was deliberately not kept on disk (SPOOL_CLIENT_KEYS=false).
  RecoveryKeyUnavailable: 'RECOVERY_KEY_UNAVAILABLE',
  // transcription
  /** A client-key recording: the server cannot decrypt its audio, so it cannot transcribe it. */
  TranscriptionNeedsServerKey: 'TRANSCRIPTION_NEEDS_SERVER_KEY',
  /** A transcription of the recording is already queued or in progress. */
  TranscriptionInProgress: 'TRANSCRIPTION_IN_PROGRESS',
  /** The engine's program or model is not installed on the gateway that ran the job. */
  TranscriptionEngineUnavailable: 'TRANSCRIPTION_ENGINE_UNAVAILABLE',
  /** The engine ran and failed (its exit status and output are in the log). */
  TranscriptionEngineFailed: 'TRANSCRIPTION_ENGINE_FAILED',
  /** The recording is longer than a job transcribes (TRANSCRIPTION_MAX_SECONDS). */
  TranscriptionTooLong: 'TRANSCRIPTION_TOO_LONG',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface CallvaultErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  /** Structured, non-secret context for logs and API error bodies. */
  details?: Record<string, unknown>;
}

export class CallvaultError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: CallvaultErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CallvaultError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }

  toJSON(): { code: ErrorCode; message: string; retryable: boolean; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export function isCallvaultError(err: unknown, code?: ErrorCode): err is CallvaultError {
  return err instanceof CallvaultError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a CallvaultError, keeping the original as `cause`. */
export function toCallvaultError(err: unknown, fallback: ErrorCode = ErrorCode.Internal): CallvaultError {
  if (err instanceof CallvaultError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CallvaultError(fallback, message, { cause: err });
}
