import type { ArtifactSealing } from './artifact-key.js';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '../log/index.js';
import type { GatewayMetrics } from '../metrics/index.js';
import type { PipelinePool } from '../pipeline/pool.js';
import type { Database } from '../db/index.js';
import type { CommitLog, PartLimiter, Spool } from '../storage/index.js';

/** The master keys that wrap per-recording data keys. Earlier keys stay so rotation never strands a recording. */
export interface MasterKeyring {
  currentId: string;
  current: Uint8Array;
  all: ReadonlyMap<string, Uint8Array>;
}

/** Everything a recording needs from the gateway, passed down explicitly rather than reached for globally. */
export interface RecordingServices {
  pool: PipelinePool;
  spool: Spool;
  /** The group commit of every live recording's journal (storage/commit-log.ts); absent, each journal syncs itself. */
  commitLog?: CommitLog;
  s3: S3Client;
  bucket: string;
  partSize: number;
  partLimiter: PartLimiter;
  db: Database;
  keyring: MasterKeyring;
  metrics: GatewayMetrics;
  logger: Logger;
  outputSampleRate: 8000 | 16000 | 24000 | 48000;
  /**
   * Keep a client-key recording's data key (wrapped under the master key) in its spool manifest while it is
   * in progress, so a crash can be recovered (SPOOL_CLIENT_KEYS). Default true.
   */
  spoolClientKeys?: boolean;
  /** Backoff of upload and database retries; defaults 500 ms doubling to 30 s. */
  retry?: { initialDelayMs: number; maxDelayMs: number };
  /** The batcher's bounds (memory, then journal backlog); defaults 30 s and 256 MiB. */
  batcherLimits?: { maxPendingMediaMs: number; maxJournalBacklogBytes: number };
  /** Wall clock in ms; injected so tests control time. */
  now: () => number;
  /** Seals calls' transcripts, events and metadata when they end (set by the gateway once it is built). */
  artifacts?: ArtifactSealing;
  /** This gateway's id (GATEWAY_ID): new recordings name it as their owner, recovery takes their ownership. */
  gatewayId: string;
  /** A peer whose heartbeat is older than this is dead (recovery leaves a recording a live peer took over). Default 30 000. */
  deadAfterMs?: number;
  /** Spool checkpoints to S3 every this many ms while a recording is live (checkpoint.ts); absent or 0: off. */
  checkpointIntervalMs?: number;
}
