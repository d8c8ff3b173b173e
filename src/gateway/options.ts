import type { RecordingOptions } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { TranscriptionEngine } from '../transcription/index.js';
import type { MasterKeyring } from './services.js';

/** Runs `task` every `intervalMs` until the returned function is called; tests inject their own. */
export type PollScheduler = (task: () => void, intervalMs: number) => () => void;

export interface TwilioAccount {
  org: string;
  accountSid: string;
  authToken: string;
}

/** A SignalWire project (SIGNALWIRE_PROJECTS): its streams and its SignalWire-side recordings belong to `org`. */
export interface SignalWireProject {
  org: string;
  /** The project id (a UUID): SignalWire's AccountSid. */
  projectId: string;
  /** The project's API token: REST credentials and the key of X-SignalWire-Signature. */
  token: string;
  /** The Space's origin, e.g. https://example.signalwire.com; its REST API is under /api/laml. */
  spaceUrl: string;
}

export interface ElevenLabsWebhookSecret {
  org: string;
  secret: string;
}

/** Everything a gateway needs, already resolved (embedded services started, keys loaded). */
export interface GatewayOptions {
  host: string;
  /** 0 picks a free port; read `gateway.port` after start. */
  port: number;
  /**
   * The base URL Twilio and LiveKit reach; stream signatures are checked against it.
   * Unset: http://localhost:<listening port>, for development.
   */
  publicUrl?: string;
  dataDir: string;
  /** Size at which the journals' commit log starts a new segment (default 64 MiB); tests shrink it. */
  commitLogSegmentBytes?: number;
  databaseUrl: string;
  s3: {
    endpoint?: string;
    region: string;
    forcePathStyle?: boolean;
    credentials?: { accessKeyId: string; secretAccessKey: string };
    bucket: string;
    partSizeBytes: number;
    maxInflightParts: number;
    /** A connection to S3 not established within this long fails the request (then retried). Default 5000. */
    connectTimeoutMs?: number;
    /** A request to S3 whose socket stays idle this long fails (then retried): a hanging S3. Default 60 000. */
    requestTimeoutMs?: number;
  };
  keyring: MasterKeyring;
  twilio: {
    accounts: TwilioAccount[];
    validateSignatures: boolean;
    maxAheadOfClockMs: number;
    /** Base URL of the Twilio REST API (proxy or regional endpoint); https://api.twilio.com when unset. */
    apiBaseUrl?: string;
    /** Delete Twilio-side recordings from Twilio once stored here. */
    deleteAfterImport?: boolean;
    /** Organisations (or `'*'`) whose streams must carry a gateway-signed stream token (`?token=`). */
    streamTokenRequired?: readonly string[] | '*';
    /** Poll Twilio for completed recordings of calls that have none here. */
    recordingPolling?: { enabled: boolean; intervalMs: number; scheduler?: PollScheduler };
  };
  /** SignalWire projects; absent or empty: /signalwire/media and the SignalWire callback are not mounted. */
  signalwire?: { projects: SignalWireProject[] };
  apiKeys: { org: string; key: string }[];
  /** ElevenLabs post-call webhooks; absent or empty: the webhook refuses every delivery (401). */
  elevenlabs?: { webhookSecrets: ElevenLabsWebhookSecret[] };
  /** The LiveKit project whose rooms the gateway records; absent when LiveKit is not configured. */
  livekit?: {
    url: string;
    apiKey: string;
    apiSecret: string;
    org: string;
    egressReconnectGraceMs?: number;
    /** How far an egress socket's audio may run ahead of wall-clock time (4405 beyond). Default: twilio.maxAheadOfClockMs. */
    maxAheadOfClockMs?: number;
  };
  /** Longest lifetime a gateway-signed URL (egress URL, Twilio stream token) may have; a later expiry is refused. Default 24 h. */
  signedUrlMaxLifetimeMs?: number;
  recording: {
    sampleRate: 8000 | 16000 | 24000 | 48000;
    defaults: RecordingOptions;
  };
  /** Admission control of new streams; every field has a default. */
  admission?: {
    /** A Twilio stream that sends no `start` within this long is closed with 4407. Default 10 000. */
    streamStartTimeoutMs?: number;
    /** Concurrent streams per Twilio account / LiveKit project. Default 1000. */
    maxStreamsPerAccount?: number;
    /** Free bytes under DATA_DIR below which new streams are refused. Default 512 MiB. */
    spoolMinFreeBytes?: number;
    /** How often free space is sampled. Default 5000. */
    spoolProbeIntervalMs?: number;
    /** Free bytes available under `dir`; statfs by default. Tests inject their own to simulate a full disk. */
    freeSpaceProbe?: (dir: string) => Promise<number>;
  };
  /**
   * The retention sweeper (bootstrap starts it): how often it deletes recordings older than their organisation's
   * retention period. Default every hour; `enabled: false` leaves it unstarted (tests call sweepOnce themselves).
   */
  retention?: { enabled?: boolean; sweepIntervalMs?: number; scheduler?: PollScheduler };
  /** Transcription jobs (`POST /api/call-recordings/{id}/transcription`). */
  transcription?: {
    /** The engines offered; the first is the default. Default: PocketSphinx (Debian's pocketsphinx, pocketsphinx-en-us). */
    engines?: readonly TranscriptionEngine[];
    /** Jobs this gateway runs at once; 0 runs none here (another instance does). Default 1. */
    concurrency?: number;
    /** A claimed job is another instance's to take once its lease runs out unrenewed. Default 60 000. */
    leaseMs?: number;
    /** How often an idle runner looks for queued jobs. Default 2000. */
    pollIntervalMs?: number;
    /** Longer recordings fail with TRANSCRIPTION_TOO_LONG (a job holds its audio in memory). Default 7200. */
    maxSeconds?: number;
  };
  /** Control routes (start, stop, pause, resume): requests per call per organisation in a window. Default 10 a minute. */
  controlRateLimit?: { limit: number; windowMs?: number };
  workerThreads?: number;
  shutdownDeadlineMs: number;
  /** Keep client-key recordings' data keys (wrapped) in their spool manifests so a crash can be recovered. Default true. */
  spoolClientKeys?: boolean;
  /** Backoff of upload and database retries. */
  retry?: { initialDelayMs: number; maxDelayMs: number };
  /** How much audio waits in memory, and how far a sender may get ahead in the journal (defaults: 30 s, 256 MiB). */
  batcherLimits?: { maxPendingMediaMs: number; maxJournalBacklogBytes: number };
  presignedUrlTtlSeconds: number;
  /** Lifetime of a signed playback URL (`POST /calls/{callId}/playback-url`), in seconds. Default 600. */
  playbackUrlTtlSeconds?: number;
  /** Running in a fleet on shared PostgreSQL; every field has a default (the id: from the host name). */
  fleet?: {
    gatewayId?: string;
    /** Heartbeat and lease renewal period. Default 5000. */
    heartbeatIntervalMs?: number;
    /** Heartbeat age after which a gateway is dead (also a lease's lifetime). Default 30 000. */
    deadAfterMs?: number;
    /** Where peers forward control requests; default http://<host>:<listening port>. */
    internalUrl?: string;
    /** How long a control request handed to the owning gateway may take to be answered (503 after). Default 10 000. */
    forwardTimeoutMs?: number;
  };
  /**
   * Spool checkpoints to S3 (SPOOL_CHECKPOINT_SECONDS): each live recording uploads its sealed journal records
   * every `intervalMs`, so a peer can finish it when this gateway's volume is lost. Absent or 0: off.
   */
  checkpoint?: {
    intervalMs: number;
    /** A dead owner's heartbeat age after which a peer takes its checkpointed recordings over. Default 300 000. */
    takeoverAfterMs?: number;
  };
  logger: Logger;
  /** Wall clock in ms; tests inject their own. */
  now?: () => number;
}
