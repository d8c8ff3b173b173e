/**
 * The core's public surface: everything the edges (api, ingest, twilio-rest) may use of the gateway, and
 * the only module of `src/gateway/` they may import (.dependency-cruiser.cjs enforces it). The edges are
 * handed a `GatewayPort` by bootstrap; they never see the Gateway class, its services or its storage.
 */
import type { Database } from '../db/index.js';
import type { CallvaultError } from '../errors/index.js';
import type { GatewayMetrics } from '../metrics/index.js';
import type { Call, CallInit } from './call.js';
import type { CarrierAccount } from './carriers.js';
import type { GatewayOptions } from './options.js';
import type { FleetPort } from './fleet.js';
import type { Recording } from './recording.js';
import type { RecordingObjects } from './recording-objects.js';
import type { CallArtifacts } from './artifact-vault.js';
import type { StoreFinishedParams, StoreFinishedResult } from './imported-recording.js';

export type GatewayState = 'starting' | 'running' | 'draining' | 'closed';

export interface GatewayPort {
  /** The validated configuration the gateway runs with (read-only). */
  readonly options: Readonly<GatewayOptions>;
  readonly metrics: GatewayMetrics;
  /** The metadata repositories (calls, recordings, organisations, agents, imports, API keys). */
  readonly db: Database;
  /** Reading and removing recordings' stored bytes: S3 objects, spool files, data keys. */
  readonly objects: RecordingObjects;
  /** A call's transcript, events and metadata as stored (sealed objects, staged rows): read, presign, purge. */
  readonly artifacts: CallArtifacts;
  readonly state: GatewayState;
  readonly publicUrl: string;
  /** This gateway in its fleet: its id, peers' heartbeats, leases of fleet-wide jobs. */
  readonly fleet: FleetPort;
  /** Where peers reach this gateway's HTTP port (registered with its heartbeat); null until it listens. */
  readonly internalUrl: string | null;
  /** Aborted when the gateway is destroyed or finishes closing. */
  readonly signal: AbortSignal;
  readonly acceptingStreams: boolean;
  readonly workersReady: boolean;
  readonly streamStartTimeoutMs: number;
  readonly spoolMinFreeBytes: number;
  readonly spoolFreeBytes: number | null;
  readonly spoolHasRoom: boolean;
  /** The gateway's clock (injectable in tests). */
  now(): number;
  admissionError(): CallvaultError | null;
  streamSlotFree(account: string): boolean;
  acquireStreamSlot(account: string): (() => void) | null;
  storageReachable(): Promise<boolean>;
  /** `primary: false` with the `dbId` of the call's row: a later stream of a call, attached without touching the row. */
  openCall(init: Omit<CallInit, 'dbId'> & { startedAt: Date; dbId?: string }): Promise<Call>;
  liveCall(orgId: string, externalId: string): Call | undefined;
  liveRecordingCall(orgId: string, recordingId: string): Call | undefined;
  findLiveRecording(orgId: string, recordingId: string): Recording | null;
  retryRecording(orgId: string, recordingId: string): Promise<void>;
  /** Stores a recording finished elsewhere (Twilio's recorder, ElevenLabs) through the same envelope and sink. */
  storeFinishedRecording(params: StoreFinishedParams): Promise<StoreFinishedResult>;
  trackSocket(close: (code: number) => void): () => void;
}

/** A Twilio-side (or SignalWire-side) recording to bring in (from a status callback, the poller or the API). */
export interface TwilioRecordingRef {
  recordingSid: string;
  callSid: string;
  /** When Twilio started recording; the import time when unknown. */
  startTime?: Date | undefined;
  /** Anything else worth keeping from the callback (status, duration, channels...). */
  details?: Record<string, unknown>;
}

export type PollOutcome = 'uploaded' | 'no_recordings' | 'twilio_error';

export interface PolledCall {
  callSid: string;
  outcome: PollOutcome;
  /** The recordings (callvault SIDs) stored by this run. */
  recordings: string[];
  /** A stable code and a fixed message per code (never the underlying error's text); Twilio's HTTP status when it answered. */
  error?: { code: string; message: string; twilioStatus?: number };
}

/**
 * Twilio-side recordings (twilio-rest implements it; bootstrap hands it to the API): download one into the
 * gateway, or look for the recent calls' recordings not stored yet.
 */
export interface TwilioImports {
  /** The account says which carrier holds the recording (Twilio, or a SignalWire project) and where its API is. */
  importRecording(account: CarrierAccount, ref: TwilioRecordingRef): Promise<StoreFinishedResult>;
  poll(orgId: string): Promise<PolledCall[]>;
}

/** What bootstrap mounts on the gateway's server once the core is up (routes, pollers). */
export type EdgeMount = (app: import('uWebSockets.js').TemplatedApp, gateway: GatewayPort) => void;

export type { Call, CallInit } from './call.js';
export { REAPER_LEASE, type FleetJob, type FleetPort, type LeaseView } from './fleet.js';
export type { PauseRecord, Recording, RecordingSummary } from './recording.js';
export type { TrackRole } from './track.js';
export type { ElevenLabsWebhookSecret, GatewayOptions, PollScheduler, SignalWireProject, TwilioAccount } from './options.js';
export { carrierAccountOf, carrierAccounts, signalWireAccount, SIGNALWIRE_LAML_PREFIX, type Carrier, type CarrierAccount } from './carriers.js';
export type { Mp3Audio, PcmAudio, StoreFinishedParams, StoreFinishedResult } from './imported-recording.js';
export type { CiphertextFile, RecordingObjects } from './recording-objects.js';
export type { ArtifactView, CallArtifacts } from './artifact-vault.js';
export { ARTIFACT_CONTENT_TYPE, ARTIFACT_FILES } from './artifact-vault.js';
export {
  artifactIdentity,
  conversationIdOf,
  eventsDocument,
  isoMicros,
  metadataDocument,
  primaryOf,
  sessionEvents,
  transcriptDocument,
  transcriptEntryJson,
  type PostedArtifacts,
  type SessionEvent,
} from './artifact-documents.js';
export {
  agentKeyContext,
  agentRecordingOptions,
  layerRecordingOptions,
  openClientKey,
  sealClientKey,
  twilioRequestKeyContext,
  type PartialRecordingOptions,
} from './recording-policy.js';
