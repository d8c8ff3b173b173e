import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Env } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { startEmbeddedPostgres } from '../db/embedded.js';
import { startEmbeddedS3 } from '../storage/index.js';
import { loadNativeUws } from '../server/uws.js';
import { startGateway } from './wiring.js';
import type { Gateway } from '../gateway/gateway.js';
import type { GatewayOptions, TwilioAccount } from '../gateway/options.js';
import type { MasterKeyring } from '../gateway/services.js';

export interface DevCredentials {
  org: string;
  apiKey: string;
  accountSid: string;
  authToken: string;
}

export interface RunningGateway {
  gateway: Gateway;
  /** Set when no TWILIO_ACCOUNTS or API_KEYS were configured: the development organisation's credentials. */
  devCredentials: DevCredentials | null;
  embedded: { postgres: boolean; s3: boolean };
  /** Drains the gateway, then stops the embedded services it started. */
  stop(): Promise<void>;
}

function masterKeyId(key: Uint8Array): string {
  // A short digest names the key without revealing anything usable about it.
  return `mk-${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
}

/** MASTER_KEY, or a key generated once and kept in DATA_DIR (mode 0600) for development. */
async function loadKeyring(env: Env, dataDir: string): Promise<MasterKeyring> {
  let current: Uint8Array;
  if (env.MASTER_KEY) {
    current = env.MASTER_KEY;
  } else {
    const path = join(dataDir, 'master.key');
    const existing = await readFile(path, 'utf8').catch(() => null);
    if (existing === null) {
      current = randomBytes(32);
      await writeFile(path, Buffer.from(current).toString('base64'), { mode: 0o600, flag: 'wx' });
    } else {
      current = Buffer.from(existing.trim(), 'base64');
      if (current.length !== 32) throw new CallvaultError(ErrorCode.ConfigInvalid, `${path} does not hold a 32-byte base64 key`);
    }
  }
  const currentId = env.MASTER_KEY_ID ?? masterKeyId(current);
  const all = new Map<string, Uint8Array>([[currentId, current]]);
  // Validated by the configuration schema before anything started.
  for (const { id, key } of env.PREVIOUS_MASTER_KEYS ?? []) all.set(id ?? masterKeyId(key), key);
  return { currentId, current, all };
}

/** A development organisation with an API key and Twilio credentials, generated once and kept in DATA_DIR. */
async function loadDevCredentials(dataDir: string): Promise<DevCredentials> {
  const path = join(dataDir, 'dev-credentials.json');
  const existing = await readFile(path, 'utf8').catch(() => null);
  if (existing !== null) return JSON.parse(existing) as DevCredentials;
  const creds: DevCredentials = {
    org: 'dev',
    apiKey: `cvdev_${randomBytes(24).toString('base64url')}`,
    accountSid: `AC${randomBytes(16).toString('hex')}`,
    authToken: randomBytes(16).toString('hex'),
  };
  await writeFile(path, JSON.stringify(creds, null, 2), { mode: 0o600, flag: 'wx' });
  return creds;
}

/** LiveKit is recorded only when its URL and credentials are all set; its rooms belong to LIVEKIT_ORG. */
function livekitOptions(env: Env, devCredentials: DevCredentials | null): Pick<GatewayOptions, 'livekit'> {
  if (!env.LIVEKIT_URL || !env.LIVEKIT_API_KEY || !env.LIVEKIT_API_SECRET) return {};
  const org = env.LIVEKIT_ORG ?? devCredentials?.org;
  if (!org) throw new CallvaultError(ErrorCode.ConfigInvalid, 'invalid configuration: LIVEKIT_ORG: required when LIVEKIT_URL is set');
  return {
    livekit: {
      url: env.LIVEKIT_URL,
      apiKey: env.LIVEKIT_API_KEY,
      apiSecret: env.LIVEKIT_API_SECRET,
      org,
      egressReconnectGraceMs: env.LIVEKIT_EGRESS_RECONNECT_GRACE_SECONDS * 1000,
      maxAheadOfClockMs: env.MAX_AHEAD_OF_CLOCK_SECONDS * 1000,
    },
  };
}

/**
 * Starts a gateway from validated environment: anything not configured falls back to an embedded,
 * development-only equivalent under DATA_DIR (PostgreSQL, an S3 endpoint, a master key, an organisation).
 */
export async function startFromEnv(env: Env, logger: Logger): Promise<RunningGateway> {
  // Before anything else starts: a gateway on the pure-JS fallback must not come up at all.
  loadNativeUws();
  const dataDir = resolve(env.DATA_DIR);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => logger.error({ err }, 'embedded service did not stop cleanly'));
  };
  try {
    let databaseUrl = env.DATABASE_URL;
    if (!databaseUrl) {
      // A free port each start: the cluster lives in DATA_DIR and nothing else needs to know where it listens.
      const pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'postgres'), port: 0, logger });
      stops.push(() => pg.stop());
      databaseUrl = pg.url;
    }
    let s3Endpoint = env.S3_ENDPOINT;
    let s3Credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
    if (!s3Endpoint) {
      const s3 = await startEmbeddedS3({ dir: join(dataDir, 's3') });
      stops.push(() => s3.stop());
      s3Endpoint = s3.endpoint;
      s3Credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
    }
    if (env.DATABASE_URL === undefined || env.S3_ENDPOINT === undefined) {
      logger.warn({ embeddedPostgres: !env.DATABASE_URL, embeddedS3: !env.S3_ENDPOINT }, 'embedded storage is for development only');
    }
    const keyring = await loadKeyring(env, dataDir);
    let accounts: TwilioAccount[] = env.TWILIO_ACCOUNTS ?? [];
    let apiKeys = env.API_KEYS ?? [];
    let devCredentials: DevCredentials | null = null;
    if (accounts.length === 0 && apiKeys.length === 0) {
      devCredentials = await loadDevCredentials(dataDir);
      accounts = [{ org: devCredentials.org, accountSid: devCredentials.accountSid, authToken: devCredentials.authToken }];
      apiKeys = [{ org: devCredentials.org, key: devCredentials.apiKey }];
    }
    if (!env.TWILIO_SIGNATURE_VALIDATION) logger.warn({}, 'twilio signature validation is disabled');
    const options: GatewayOptions = {
      host: env.HOST,
      port: env.PORT,
      publicUrl: env.PUBLIC_URL,
      dataDir,
      databaseUrl,
      s3: {
        endpoint: s3Endpoint,
        region: env.S3_REGION,
        forcePathStyle: env.S3_FORCE_PATH_STYLE ?? !env.S3_ENDPOINT,
        credentials: s3Credentials,
        bucket: env.S3_BUCKET,
        partSizeBytes: env.S3_PART_SIZE_MIB * 1024 * 1024,
        maxInflightParts: env.S3_MAX_INFLIGHT_PARTS,
        connectTimeoutMs: env.S3_CONNECT_TIMEOUT_MS,
        requestTimeoutMs: env.S3_REQUEST_TIMEOUT_MS,
      },
      keyring,
      twilio: {
        accounts,
        validateSignatures: env.TWILIO_SIGNATURE_VALIDATION,
        maxAheadOfClockMs: env.MAX_AHEAD_OF_CLOCK_SECONDS * 1000,
        ...(env.TWILIO_STREAM_TOKEN_REQUIRED ? { streamTokenRequired: env.TWILIO_STREAM_TOKEN_REQUIRED } : {}),
        ...(env.TWILIO_API_BASE_URL ? { apiBaseUrl: env.TWILIO_API_BASE_URL } : {}),
        deleteAfterImport: env.TWILIO_DELETE_AFTER_IMPORT,
        recordingPolling: { enabled: env.TWILIO_RECORDING_POLLING, intervalMs: env.TWILIO_RECORDING_POLL_INTERVAL_MINUTES * 60_000 },
      },
      ...(env.SIGNALWIRE_PROJECTS?.length ? { signalwire: { projects: env.SIGNALWIRE_PROJECTS } } : {}),
      apiKeys,
      elevenlabs: { webhookSecrets: env.ELEVENLABS_WEBHOOK_SECRETS ?? [] },
      ...livekitOptions(env, devCredentials),
      recording: { sampleRate: env.RECORDING_SAMPLE_RATE, defaults: env.RECORDING_DEFAULT },
      admission: {
        streamStartTimeoutMs: env.STREAM_START_TIMEOUT_SECONDS * 1000,
        maxStreamsPerAccount: env.MAX_STREAMS_PER_ACCOUNT,
        spoolMinFreeBytes: env.SPOOL_MIN_FREE_MIB * 1024 * 1024,
      },
      retention: { sweepIntervalMs: env.RETENTION_SWEEP_INTERVAL_MINUTES * 60_000 },
      controlRateLimit: { limit: env.CONTROL_RATE_LIMIT_PER_MINUTE, windowMs: 60_000 },
      transcription: { concurrency: env.TRANSCRIPTION_CONCURRENCY, maxSeconds: env.TRANSCRIPTION_MAX_SECONDS },
      workerThreads: env.WORKER_THREADS,
      shutdownDeadlineMs: env.SHUTDOWN_DEADLINE_SECONDS * 1000,
      spoolClientKeys: env.SPOOL_CLIENT_KEYS,
      presignedUrlTtlSeconds: env.PRESIGNED_URL_TTL_SECONDS,
      playbackUrlTtlSeconds: env.PLAYBACK_URL_TTL_SECONDS,
      signedUrlMaxLifetimeMs: env.SIGNED_URL_MAX_LIFETIME_SECONDS * 1000,
      checkpoint: { intervalMs: env.SPOOL_CHECKPOINT_SECONDS * 1000, takeoverAfterMs: env.SPOOL_CHECKPOINT_TAKEOVER_SECONDS * 1000 },
      fleet: {
        gatewayId: env.GATEWAY_ID,
        heartbeatIntervalMs: env.HEARTBEAT_INTERVAL_SECONDS * 1000,
        deadAfterMs: env.GATEWAY_DEAD_AFTER_SECONDS * 1000,
        forwardTimeoutMs: env.CONTROL_FORWARD_TIMEOUT_SECONDS * 1000,
        ...(env.INTERNAL_URL ? { internalUrl: env.INTERNAL_URL } : {}),
      },
      logger,
    };
    const gateway = await startGateway(options);
    return {
      gateway,
      devCredentials,
      embedded: { postgres: !env.DATABASE_URL, s3: !env.S3_ENDPOINT },
      async stop() {
        await gateway.close();
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
