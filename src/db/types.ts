export type JsonObject = Record<string, unknown>;

export interface Organisation {
  id: string;
  name: string;
  createdAt: Date;
}

/** What may be shown about a key: never its hash, never the secret. */
/** What a key may do: read recordings, control them mid-call, delete them, administer agents and policy. */
export type ApiKeyScope = 'read' | 'control' | 'delete' | 'admin';
export const API_KEY_SCOPES: readonly ApiKeyScope[] = ['read', 'control', 'delete', 'admin'];

export interface ApiKeyInfo {
  id: string;
  orgId: string;
  prefix: string;
  label: string | null;
  scopes: ApiKeyScope[];
  /** A user-bound key sees only the calls tagged with this user; null: every call of the organisation. */
  userId: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface CreatedApiKey {
  id: string;
  /** The full token. Shown once: only its hash is stored. */
  key: string;
  prefix: string;
}

export interface VerifiedApiKey {
  orgId: string;
  keyId: string;
  scopes: ApiKeyScope[];
  userId: string | null;
}

export interface CreateApiKeyOptions {
  label?: string | undefined;
  /** Default: every scope. */
  scopes?: readonly ApiKeyScope[] | undefined;
  userId?: string | undefined;
}

export type CallSource = 'twilio' | 'signalwire' | 'livekit' | 'elevenlabs';
export type CallStatus = 'active' | 'ended';

export interface Call {
  id: string;
  orgId: string;
  source: CallSource;
  /** Twilio CallSid, SignalWire call id (a UUID), LiveKit room SID or ElevenLabs conversation id. */
  externalId: string;
  status: CallStatus;
  startedAt: Date;
  endedAt: Date | null;
  metadata: JsonObject;
  /** The gateway (GATEWAY_ID) holding the call's primary stream, as of its last (re)connection. */
  ownerGateway: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface UpsertActiveCallInput {
  orgId: string;
  source: CallSource;
  externalId: string;
  startedAt: Date;
  metadata?: JsonObject;
  /** The gateway taking the call's stream. */
  ownerGateway?: string | null;
}

/**
 * `uploading`: the audio is complete in the spool and S3 is still taking it. `interrupted`: in progress on a
 * gateway that stopped heartbeating, until it (or a replacement on its volume) recovers it from its spool.
 */
export type RecordingStatus = 'in_progress' | 'uploading' | 'interrupted' | 'completed' | 'failed';
export type RecordingSource = 'gateway' | 'livekit' | 'twilio' | 'signalwire' | 'elevenlabs';
export type KeyMode = 'server' | 'client';

export interface Recording {
  id: string;
  /** Twilio-style public id: 'CR' + 32 lowercase hex. */
  recordingSid: string;
  orgId: string;
  callId: string | null;
  status: RecordingStatus;
  source: RecordingSource;
  channels: number;
  sampleRate: number;
  format: string;
  mediaType: string;
  durationMs: number | null;
  sizeBytes: number | null;
  bucket: string;
  objectKey: string;
  keyMode: KeyMode;
  keyId: string | null;
  wrappedKey: Buffer | null;
  errorCode: string | null;
  /** The gateway (GATEWAY_ID) whose spool holds the recording: set when it starts, taken over by recovery. */
  ownerGateway: string | null;
  /** When its first spool checkpoint reached S3 (SPOOL_CHECKPOINT_SECONDS); null when it has none. */
  checkpointedAt: Date | null;
  startedAt: Date;
  endedAt: Date | null;
  metadata: JsonObject;
  createdAt: Date;
  updatedAt: Date;
}

export interface CreateRecordingInput {
  orgId: string;
  callId: string | null;
  source: RecordingSource;
  channels: number;
  sampleRate: number;
  format: string;
  mediaType: string;
  bucket: string;
  objectKey: string;
  keyMode: KeyMode;
  /** Required (with wrappedKey) in server key mode. */
  keyId?: string | null;
  wrappedKey?: Uint8Array | null;
  startedAt: Date;
  metadata?: JsonObject;
  /** The gateway recording it (its spool holds it). */
  ownerGateway?: string | null;
}

export interface CompleteRecordingInput {
  durationMs: number;
  sizeBytes: number;
  endedAt: Date;
}

export interface FailRecordingInput {
  errorCode: string;
  endedAt: Date;
}

export interface ListRecordingsQuery {
  /** The call's external id (Twilio CallSid or LiveKit room SID). */
  callSid?: string;
  status?: RecordingStatus;
  source?: RecordingSource;
  /** Inclusive lower bound on startedAt. */
  fromDate?: Date;
  /** Exclusive upper bound on startedAt. */
  toDate?: Date;
  /** Only recordings of calls tagged with this user (`userId` in the call's metadata). */
  userId?: string;
  /** Zero-based, like Twilio's `Page`. */
  page: number;
  /** Rows per page, 1..1000. */
  limit: number;
}

export interface RecordingPage {
  /** Rows matching the filters across all pages. */
  total: number;
  rows: Recording[];
}
