import { readFile, statfs } from 'node:fs/promises';
import { hostname } from 'node:os';
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../errors/index.js';
import { GatewayMetrics } from '../metrics/index.js';
import { PipelinePool } from '../pipeline/pool.js';
import { createDatabase, type Database } from '../db/index.js';
import { CommitLog, createS3Client, ensureBucket, PartLimiter, repairJournals, Spool } from '../storage/index.js';
import { EventEmitter } from 'node:events';
import { loadNativeUws } from '../server/uws.js';
import { Call, type CallInit } from './call.js';
import type { Recording } from './recording.js';
import type { GatewayOptions } from './options.js';
import type { RecordingServices } from './services.js';
import type { EdgeMount, GatewayPort, GatewayState } from './port.js';
import { recordingObjects, type RecordingObjects } from './recording-objects.js';
import { ArtifactVault, type CallArtifacts } from './artifact-vault.js';
import { storeFinishedRecording, type StoreFinishedParams, type StoreFinishedResult } from './imported-recording.js';
import { recoverRecording, recoverSpool, settleRecovery } from './recovery.js';
import { CHECKPOINT_TAKEOVER_LEASE, DEFAULT_CHECKPOINT_TAKEOVER_MS, takeOverCheckpointed } from './takeover.js';
import { DEFAULT_DEAD_AFTER_MS, Fleet, type FleetPort } from './fleet.js';
import { defaultGatewayId } from '../config/index.js';

/** Also the journal's group-commit cadence: frames are durable at most this long (plus one fsync) after arrival. */
const FLUSH_TICK_MS = 50;
/** After the drain deadline, how long recordings still get to finalise before they are left to the spool. */
const FINALISE_GRACE_MS = 5_000;
const DEFAULT_STREAM_START_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_STREAMS_PER_ACCOUNT = 1000;
const DEFAULT_SPOOL_MIN_FREE_BYTES = 512 * 1024 * 1024;
const DEFAULT_SPOOL_PROBE_INTERVAL_MS = 5000;
const DEFAULT_HEARTBEAT_INTERVAL_MS = 5000;

/** The package version, for the heartbeat row (dist/gateway and src/gateway are both two levels down). */
async function packageVersion(logger: GatewayOptions['logger']): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch (err) {
    logger.warn({ err }, 'package.json unreadable: the heartbeat reports version unknown');
    return 'unknown';
  }
}

/** Bytes available to an unprivileged writer on the filesystem holding `dir`. */
export async function statfsFreeBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

export type { GatewayState } from './port.js';

export interface GatewayEvents {
  /** Once, when close() or destroy() has released everything. */
  closed: [];
}

/**
 * The root lifecycle object: owns the HTTP/WebSocket server, the worker pool, the database and the
 * storage clients, and every live Call. `close()` drains gracefully; `destroy(err)` aborts; both are
 * idempotent and `closed` is emitted once. The edges see it only as a GatewayPort.
 */
export class Gateway extends EventEmitter<GatewayEvents> implements GatewayPort {
  readonly options: GatewayOptions;
  readonly metrics: GatewayMetrics;
  readonly services: RecordingServices;
  readonly db: Database;
  readonly objects: RecordingObjects;
  readonly artifacts: CallArtifacts;
  readonly app: TemplatedApp;
  readonly fleet: Fleet;
  /** The gateway's clock, bound so it can be passed around. */
  readonly now: () => number;
  readonly #calls = new Set<Call>();
  readonly #closers = new Set<(code: number) => void>();
  readonly #abort = new AbortController();
  #listenSocket: us_listen_socket | null = null;
  #port = 0;
  #state: GatewayState = 'starting';
  #ticker: NodeJS.Timeout | null = null;
  #closePromise: Promise<void> | null = null;
  #closedEmitted = false;
  #released: Promise<void> | null = null;
  /**
   * With checkpoints on: the fleet-wide job that finishes dead peers' checkpointed recordings here (takeover.ts),
   * at every heartbeat on the holder of its lease.
   */
  #scheduleTakeover(takeoverAfterMs: number): void {
    const taking = new Set<string>();
    this.fleet.schedule({
      name: CHECKPOINT_TAKEOVER_LEASE,
      intervalMs: this.options.fleet?.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      runOnce: () =>
        takeOverCheckpointed(this.services, {
          takeoverAfterMs,
          signal: this.#abort.signal,
          isLocal: (id) => taking.has(id) || this.#retrying.has(id) || [...this.#calls].some((call) => call.unsettledRecordings.some((r) => r.id === id)),
          track: (id, done) => {
            taking.add(id);
            const settled = done.finally(() => taking.delete(id));
            this.#recoveries = Promise.all([this.#recoveries, settled]).then(() => undefined);
          },
        }),
    });
  }

  #recoveries: Promise<void> = Promise.resolve();
  readonly #retrying = new Set<string>();
  readonly #streamsByAccount = new Map<string, number>();
  #spoolFreeBytes: number | null = null;
  #spoolLow = false;
  #spoolProbe: NodeJS.Timeout | null = null;
  #probing: Promise<void> | null = null;

  private constructor(options: GatewayOptions, services: RecordingServices, app: TemplatedApp, version: string) {
    super();
    this.fleet = new Fleet(
      {
        gatewayId: services.gatewayId,
        heartbeatIntervalMs: options.fleet?.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
        deadAfterMs: options.fleet?.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS,
      },
      {
        db: services.db,
        logger: options.logger,
        metrics: services.metrics,
        version,
        startedAt: new Date(services.now()),
        now: services.now,
        activeCalls: () => this.#calls.size,
        liveRecordingIds: () => [...this.#calls].flatMap((call) => call.unsettledRecordings.map((r) => r.id)),
        internalUrl: () => this.internalUrl,
      },
    );
    this.options = options;
    this.objects = recordingObjects(services);
    // Everything written through db.artifacts (the API, LiveKit, ElevenLabs, transcription) goes through the vault,
    // which seals it when the call ends; it stops sealing once the gateway is destroyed or closed.
    const vault = new ArtifactVault(services, services.db.artifacts, this.#abort.signal);
    this.artifacts = vault;
    services.artifacts = vault;
    services.db = { ...services.db, artifacts: vault.repository };
    this.now = services.now;
    this.services = services;
    this.metrics = services.metrics;
    this.metrics.workerUtilizationSource = () => services.pool.utilization;
    this.db = services.db;
    this.app = app;
  }

  /**
   * Starts the core (database, storage, workers), finishes what a crash left in the spool, then lets
   * `mount` register the edges (ingest, API) on the server before it listens.
   */
  static async start(options: GatewayOptions, mount: EdgeMount): Promise<Gateway> {
    const uws = loadNativeUws();
    const logger = options.logger;
    const now = options.now ?? Date.now;
    const db = createDatabase({ url: options.databaseUrl, logger });
    const pool = new PipelinePool({
      ...(options.workerThreads === undefined ? {} : { threads: options.workerThreads }),
      onDropFailed: (err) => logger.warn({ err }, 'could not free a finished pipeline session on its worker thread'),
    });
    let commitLog: CommitLog | undefined;
    let started: Gateway | undefined;
    try {
      await db.migrate();
      for (const { org } of [...options.twilio.accounts, ...(options.signalwire?.projects ?? []), ...options.apiKeys]) await db.organisations.ensure(org);
      for (const { org, key } of options.apiKeys) await db.apiKeys.ensureBootstrap(org, key);
      const s3 = createS3Client({
        endpoint: options.s3.endpoint,
        region: options.s3.region,
        forcePathStyle: options.s3.forcePathStyle,
        credentials: options.s3.credentials,
        ...(options.s3.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.s3.connectTimeoutMs } : {}),
        ...(options.s3.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.s3.requestTimeoutMs } : {}),
      });
      await ensureBucket(s3, options.s3.bucket);
      const metrics = new GatewayMetrics();
      const spool = new Spool(`${options.dataDir}/spool`);
      // Before recovery reads a journal: what a power loss took from the journals comes back from the log.
      const commitLogDir = `${options.dataDir}/commit-log`;
      const repair = await repairJournals(commitLogDir, (id) => spool.journalPath(id));
      for (const gap of repair.gaps) logger.error({ code: ErrorCode.SpoolFailed, ...gap }, 'journal lacks records the commit log does not hold either');
      if (repair.segments > 0) logger.info({ ...repair, gaps: repair.gaps.length }, 'journals repaired from the commit log');
      commitLog = await CommitLog.open(commitLogDir, {
        ...(options.commitLogSegmentBytes !== undefined ? { segmentBytes: options.commitLogSegmentBytes } : {}),
        onRetireFailed: (err) => logger.error({ code: err.code, err }, 'could not retire a commit log segment'),
      });
      const services: RecordingServices = {
        pool,
        spool,
        commitLog,
        s3,
        bucket: options.s3.bucket,
        partSize: options.s3.partSizeBytes,
        partLimiter: new PartLimiter(options.s3.maxInflightParts),
        db,
        keyring: options.keyring,
        metrics,
        logger,
        outputSampleRate: options.recording.sampleRate,
        ...(options.spoolClientKeys !== undefined ? { spoolClientKeys: options.spoolClientKeys } : {}),
        ...(options.retry ? { retry: options.retry } : {}),
        ...(options.batcherLimits ? { batcherLimits: options.batcherLimits } : {}),
        now,
        gatewayId: options.fleet?.gatewayId ?? defaultGatewayId(),
        deadAfterMs: options.fleet?.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS,
        ...(options.checkpoint?.intervalMs ? { checkpointIntervalMs: options.checkpoint.intervalMs } : {}),
      };
      const app = uws.App();
      const gateway = new Gateway(options, services, app, await packageVersion(logger));
      // Alive in the fleet before recovery: a peer stops marking this gateway's recordings interrupted.
      await gateway.fleet.start();
      started = gateway;
      // Before any stream is accepted: what a crash left in the spool is rebuilt; its uploads go on meanwhile.
      const recovery = await recoverSpool(services, gateway.#abort.signal);
      gateway.#recoveries = recovery.uploads;
      if (options.checkpoint?.intervalMs) gateway.#scheduleTakeover(options.checkpoint.takeoverAfterMs ?? DEFAULT_CHECKPOINT_TAKEOVER_MS);
      mount(app, gateway);
      await gateway.sampleSpoolFreeSpace();
      await gateway.#listen(uws);
      gateway.#spoolProbe = setInterval(() => void gateway.sampleSpoolFreeSpace(), options.admission?.spoolProbeIntervalMs ?? DEFAULT_SPOOL_PROBE_INTERVAL_MS);
      gateway.#spoolProbe.unref();
      gateway.#ticker = setInterval(() => gateway.#tick(), FLUSH_TICK_MS);
      gateway.#ticker.unref();
      gateway.#state = 'running';
      // The first heartbeat went out before the port was known; peers learn the internal address now.
      await gateway.fleet.beat();
      logger.info({ gatewayId: gateway.fleet.gatewayId, port: gateway.port, sampleRate: options.recording.sampleRate, threads: pool.threads }, 'gateway listening');
      return gateway;
    } catch (err) {
      await commitLog?.close().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'could not close the commit log'));
      await started?.fleet.close().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'could not release the fleet leases'));
      await pool.close().catch(() => undefined);
      await db.close().catch(() => undefined);
      throw err;
    }
  }

  /** Where peers reach this gateway (INTERNAL_URL, else http://<host>:<port>); null until it listens. */
  get internalUrl(): string | null {
    if (this.options.fleet?.internalUrl) return this.options.fleet.internalUrl;
    if (this.#port === 0) return null;
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? hostname() : this.options.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.#port}`;
  }

  #listen(uws: typeof import('uWebSockets.js')): Promise<void> {
    return new Promise((resolve, reject) => {
      this.app.listen(this.options.host, this.options.port, (token) => {
        if (!token) {
          reject(new CallvaultError(ErrorCode.ConfigInvalid, `could not listen on ${this.options.host}:${this.options.port}`));
          return;
        }
        this.#listenSocket = token;
        this.#port = uws.us_socket_local_port(token);
        resolve();
      });
    });
  }

  #tick(): void {
    const now = this.services.now();
    for (const call of this.#calls) call.flushIfDue(now);
    this.metrics.workerQueueDepth.set(this.services.pool.pending + this.services.pool.waiting);
    this.metrics.partsInFlight.set(this.services.partLimiter.inFlight);
  }

  get workersReady(): boolean {
    return this.services.pool.ready;
  }

  storeFinishedRecording(params: StoreFinishedParams): Promise<StoreFinishedResult> {
    return storeFinishedRecording(this.services, params, this.#abort.signal);
  }

  get port(): number {
    return this.#port;
  }

  get publicUrl(): string {
    return this.options.publicUrl ?? `http://localhost:${this.#port}`;
  }

  get state(): GatewayState {
    return this.#state;
  }

  /** False once shutdown has begun, so load balancers stop sending streams before they are refused. */
  get acceptingStreams(): boolean {
    return this.#state === 'running';
  }

  get streamStartTimeoutMs(): number {
    return this.options.admission?.streamStartTimeoutMs ?? DEFAULT_STREAM_START_TIMEOUT_MS;
  }

  get spoolMinFreeBytes(): number {
    return this.options.admission?.spoolMinFreeBytes ?? DEFAULT_SPOOL_MIN_FREE_BYTES;
  }

  /** Free bytes under DATA_DIR as last sampled (null until a sample succeeded). */
  get spoolFreeBytes(): number | null {
    return this.#spoolFreeBytes;
  }

  /** False while free space under DATA_DIR is below the reserve: no new stream is admitted. */
  get spoolHasRoom(): boolean {
    return !this.#spoolLow;
  }

  /**
   * Samples free space under DATA_DIR (periodically, never per frame). A failed probe is logged and keeps
   * the previous verdict, so a transient statfs error neither admits onto a full disk nor refuses everything.
   */
  sampleSpoolFreeSpace(): Promise<void> {
    if (this.#probing) return this.#probing;
    const probe = this.options.admission?.freeSpaceProbe ?? statfsFreeBytes;
    this.#probing = (async () => {
      try {
        const free = await probe(this.options.dataDir);
        this.#spoolFreeBytes = free;
        this.metrics.spoolFreeBytes.set(free);
        const low = free < this.spoolMinFreeBytes;
        if (low !== this.#spoolLow) {
          const fields = { code: ErrorCode.SpoolFull, freeBytes: free, minFreeBytes: this.spoolMinFreeBytes };
          if (low) this.options.logger.error(fields, 'spool free space below reserve: refusing new streams');
          else this.options.logger.info(fields, 'spool free space restored: admitting new streams');
        }
        this.#spoolLow = low;
      } catch (err) {
        this.options.logger.error({ code: ErrorCode.SpoolFailed, dir: this.options.dataDir, err }, 'spool free space probe failed');
      } finally {
        this.#probing = null;
      }
    })();
    return this.#probing;
  }

  /**
   * Why a new stream would be refused right now (shutdown, spool below its reserve), or null.
   * Streams and calls already admitted are never affected.
   */
  admissionError(): CallvaultError | null {
    if (!this.acceptingStreams) return new CallvaultError(ErrorCode.ShuttingDown, 'gateway is shutting down', { retryable: true });
    if (this.#spoolLow) {
      return new CallvaultError(ErrorCode.SpoolFull, 'free space under DATA_DIR is below SPOOL_MIN_FREE_MIB', {
        retryable: true,
        details: { freeBytes: this.#spoolFreeBytes, minFreeBytes: this.spoolMinFreeBytes },
      });
    }
    return null;
  }

  /** Whether `account` may open one more stream (MAX_STREAMS_PER_ACCOUNT). */
  streamSlotFree(account: string): boolean {
    return (this.#streamsByAccount.get(account) ?? 0) < (this.options.admission?.maxStreamsPerAccount ?? DEFAULT_MAX_STREAMS_PER_ACCOUNT);
  }

  /** Takes one of the account's stream slots; null at the limit. The returned release is idempotent. */
  acquireStreamSlot(account: string): (() => void) | null {
    if (!this.streamSlotFree(account)) return null;
    this.#streamsByAccount.set(account, (this.#streamsByAccount.get(account) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#streamsByAccount.get(account) ?? 1) - 1;
      if (left <= 0) this.#streamsByAccount.delete(account);
      else this.#streamsByAccount.set(account, left);
    };
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Readiness: the bucket answers within a short deadline. */
  async storageReachable(): Promise<boolean> {
    try {
      await this.services.s3.send(new HeadBucketCommand({ Bucket: this.services.bucket }), {
        abortSignal: AbortSignal.timeout(2000),
      });
      return true;
    } catch {
      return false;
    }
  }

  get activeCalls(): number {
    return this.#calls.size;
  }

  /** Upserts the call row and registers a live Call; it unregisters itself when it closes. */
  async openCall(init: Omit<CallInit, 'dbId'> & { startedAt: Date; dbId?: string }): Promise<Call> {
    const refused = this.admissionError();
    if (refused) throw refused;
    // A later stream of a call (primary: false) attaches to the row its first stream registered, untouched.
    const dbId =
      init.dbId !== undefined && init.primary === false
        ? init.dbId
        : (
            await this.db.calls.upsertActive({
              orgId: init.orgId,
              source: init.source,
              externalId: init.externalId,
              startedAt: init.startedAt,
              metadata: init.metadata,
              ownerGateway: this.fleet.gatewayId,
            })
          ).id;
    const call = new Call(this.services, { ...init, dbId });
    if (!this.acceptingStreams) {
      // Shutdown began while the row was written: close() has already taken its list of calls.
      await call.close();
      throw new CallvaultError(ErrorCode.ShuttingDown, 'gateway is shutting down', { retryable: true });
    }
    this.#calls.add(call);
    call.once('closed', () => this.#calls.delete(call));
    return call;
  }

  /** The recording in progress on this gateway with this id, if it belongs to the organisation. */
  findLiveRecording(orgId: string, recordingId: string): Recording | null {
    for (const call of this.#calls) {
      if (call.orgId !== orgId) continue;
      const recording = call.unsettledRecordings.find((r) => r.id === recordingId);
      if (recording) return recording;
    }
    return null;
  }

  /**
   * Finishes a recording from its spool now instead of at the next start (a recording that failed for good
   * keeps its journal). Resolves once the container is rebuilt; the upload and completion go on in the
   * background like any recovery. CONFLICT when it is live here, already being retried, or has no spool here.
   */
  async retryRecording(orgId: string, recordingId: string): Promise<void> {
    if (this.findLiveRecording(orgId, recordingId)) {
      throw new CallvaultError(ErrorCode.Conflict, 'the recording is still in progress');
    }
    if (this.#retrying.has(recordingId)) throw new CallvaultError(ErrorCode.Conflict, 'the recording is already being retried');
    const entry = (await this.services.spool.list()).find((e) => e.recordingId === recordingId && e.manifest['orgId'] === orgId);
    if (!entry) throw new CallvaultError(ErrorCode.Conflict, 'this gateway holds no spool for the recording');
    this.#retrying.add(recordingId);
    try {
      const outcome = await recoverRecording(this.services, entry, this.#abort.signal);
      if (typeof outcome === 'string') {
        this.#retrying.delete(recordingId);
        if (outcome === 'skipped') throw new CallvaultError(ErrorCode.Conflict, 'the spool of this recording has no frame journal');
        return;
      }
      const done = settleRecovery(this.services, recordingId, outcome.done).finally(() => this.#retrying.delete(recordingId));
      this.#recoveries = Promise.all([this.#recoveries, done]).then(() => undefined);
    } catch (err) {
      this.#retrying.delete(recordingId);
      throw err;
    }
  }

  /** The live call with this external id (CallSid, room SID) in the organisation, if any. */
  liveCall(orgId: string, externalId: string): Call | undefined {
    let later: Call | undefined;
    for (const call of this.#calls) {
      if (call.orgId !== orgId || call.externalId !== externalId || call.closed) continue;
      // The call's primary stream first; a later stream of it only when that one is gone.
      if (call.primary) return call;
      later ??= call;
    }
    return later;
  }

  /** The live call whose current recording has this id, if any. */
  liveRecordingCall(orgId: string, recordingId: string): Call | undefined {
    for (const call of this.#calls) {
      if (call.orgId === orgId && call.recording?.id === recordingId && !call.closed) return call;
    }
    return undefined;
  }

  /** Lets ingest routes register a way to close their sockets when the gateway goes away. */
  trackSocket(close: (code: number) => void): () => void {
    this.#closers.add(close);
    return () => this.#closers.delete(close);
  }

  /**
   * Graceful shutdown: stop accepting streams (readiness goes false first), finish and finalise every
   * recording within the deadline, destroy what is left, then release the server, workers and database.
   */
  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#closePromise = (async () => {
      const logger = this.options.logger;
      this.#state = 'draining';
      logger.info({ activeCalls: this.#calls.size }, 'gateway draining');
      // Fleet-wide jobs move to a peer now, not once the drain is over; the heartbeat goes on while calls drain.
      await this.fleet.releaseLeases();
      // Drain: calls in progress carry on until they end by themselves or the deadline passes.
      const drained = await waitUntil(() => this.#allSettled(), this.options.shutdownDeadlineMs);
      if (!drained) {
        const remaining = [...this.#calls];
        logger.warn({ remaining: remaining.length }, 'shutdown deadline passed, finalising the calls still in progress');
        for (const call of remaining) void call.close();
        for (const close of [...this.#closers]) close(1001);
        const finalised = await waitUntil(() => this.#allSettled(), FINALISE_GRACE_MS);
        if (!finalised) {
          // Never failed for lack of time: the journal holds them and the next start finishes them.
          const left = [...this.#calls];
          for (const call of left) call.abandon();
          logger.warn({ remaining: left.length }, 'recordings left in the spool for the next start');
        }
      }
      // Recoveries still uploading stop here; their spool stays for the next start.
      this.#abort.abort(new CallvaultError(ErrorCode.ShuttingDown, 'gateway closed', { retryable: true }));
      await this.#recoveries;
      for (const close of [...this.#closers]) close(1001);
      await this.#releaseResources();
      this.#state = 'closed';
      logger.info({}, 'gateway closed');
      this.#emitClosed();
    })();
    return this.#closePromise;
  }

  /** Aborts at once: every recording is destroyed (uploads aborted, spools kept), sockets dropped. */
  destroy(err: CallvaultError = new CallvaultError(ErrorCode.Destroyed, 'gateway destroyed')): void {
    if (this.#state === 'closed' || this.#abort.signal.aborted) return;
    this.#abort.abort(err);
    this.#state = 'draining';
    // Like a crash: heartbeats stop and the leases are left to expire.
    this.fleet.stop();
    for (const call of this.#calls) call.destroy(err);
    for (const close of [...this.#closers]) close(1001);
    // A close() under way settles too: it finds the resources released and the state closed.
    this.#closePromise ??= Promise.resolve();
    void this.#releaseResources().catch((releaseErr: unknown) =>
      this.options.logger.error({ code: toCallvaultError(releaseErr).code, err: releaseErr }, 'gateway resources did not close cleanly'),
    );
    this.#state = 'closed';
    this.#emitClosed();
  }

  /** Server socket, timers, workers, S3 client and database pool: released once, whoever asks first. */
  #releaseResources(): Promise<void> {
    this.#released ??= (async () => {
      this.#release();
      // After the recordings: their journals are closed (synchronised) or closing; the log's last segment goes once they are.
      await this.services.commitLog
        ?.close()
        .catch((err: unknown) => this.options.logger.error({ code: toCallvaultError(err).code, err }, 'could not close the commit log'));
      // Leases are released so a peer takes the fleet-wide jobs at once (destroy(): they simply expire).
      await this.fleet.close();
      this.services.s3.destroy();
      await Promise.all([this.services.pool.close(), this.db.close()]);
    })();
    return this.#released;
  }

  #emitClosed(): void {
    if (this.#closedEmitted) return;
    this.#closedEmitted = true;
    this.emit('closed');
  }

  /** Resolves once every call has closed and its recordings are final. */
  async #allSettled(): Promise<void> {
    // A call leaves #calls when it emits 'closed', which it does once its recordings are final.
    while (this.#calls.size > 0) {
      await Promise.all([...this.#calls].map((call) => new Promise<void>((resolve) => call.once('closed', () => resolve()))));
    }
  }

  #release(): void {
    if (this.#ticker) clearInterval(this.#ticker);
    this.#ticker = null;
    if (this.#spoolProbe) clearInterval(this.#spoolProbe);
    this.#spoolProbe = null;
    if (this.#listenSocket) {
      loadNativeUws().us_listen_socket_close(this.#listenSocket);
      this.#listenSocket = null;
    }
  }
}

/** Runs `work` and tells whether it finished within `ms`. */
async function waitUntil(work: () => Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const outcome = await Promise.race([work().then(() => true as const), deadline]);
  clearTimeout(timer);
  return outcome;
}
