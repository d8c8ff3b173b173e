/**
 * Running as one of a fleet on shared PostgreSQL: the gateway's heartbeat row, leases under which fleet-wide
 * jobs run on exactly one gateway at a time, and the job that marks a dead peer's recordings interrupted.
 *
 * A lease is a row with an expiry (fleet_leases), taken or renewed in one statement on the database's clock.
 * A gateway that dies (SIGKILL, a lost node) stops renewing and its leases pass to a peer once they expire;
 * one that shuts down gracefully releases them, so they move at once. A lease row rather than a session
 * advisory lock: it needs no dedicated connection per gateway, survives a pool reconnect without a gap, and
 * shows in `GET /api/gateways` who runs what.
 */
import { performance } from 'node:perf_hooks';
import { toCallvaultError } from '../errors/index.js';
import type { Database, GatewayRow, LeaseRow } from '../db/index.js';
import type { Logger } from '../log/index.js';
import type { GatewayMetrics } from '../metrics/index.js';

export interface FleetOptions {
  /** This gateway's stable id (GATEWAY_ID). */
  gatewayId: string;
  /** How often the heartbeat is written and leases renewed. */
  heartbeatIntervalMs: number;
  /** A peer whose heartbeat is older than this is dead; also the lifetime of a lease. */
  deadAfterMs: number;
}

/** A lease as a job sees it: whether this gateway may run it right now. */
export interface LeaseView {
  readonly name: string;
  /** True while this gateway holds an unexpired lease (judged on the local monotonic clock, with a margin). */
  readonly held: boolean;
}

/**
 * Something periodic that must run on one gateway of the fleet: `runOnce(now)` is called every `intervalMs`
 * while this gateway holds the lease `name` (never two runs at once). A sweeper with `sweepOnce(now)` wraps as
 * `{ name: 'retention-sweeper', intervalMs, runOnce: (now) => sweeper.sweepOnce(now) }`.
 */
export interface FleetJob {
  name: string;
  intervalMs: number;
  runOnce(now: number): Promise<unknown>;
}

export interface FleetPort {
  readonly gatewayId: string;
  readonly deadAfterMs: number;
  /** The lease `name`, competed for from now on until the gateway closes (the same object for the same name). */
  lease(name: string): LeaseView;
  /** Runs `job` on whichever gateway holds its lease; returns a stop function (which also releases the lease). */
  schedule(job: FleetJob): () => void;
  /** Every gateway that heartbeat into this database, alive or not. */
  gateways(): Promise<GatewayRow[]>;
  /** One gateway's row, or null when it never heartbeat. */
  gateway(id: string): Promise<GatewayRow | null>;
  leases(): Promise<LeaseRow[]>;
}

export interface FleetDeps {
  db: Database;
  logger: Logger;
  metrics: GatewayMetrics;
  version: string;
  startedAt: Date;
  now: () => number;
  /** Live calls on this gateway, for the heartbeat row. */
  activeCalls(): number;
  /** Ids of the recordings live on this gateway: interrupted while its heartbeat was late, they come back. */
  liveRecordingIds(): string[];
  /** Where peers reach this gateway (set once it listens). */
  internalUrl(): string | null;
}

/** A peer whose heartbeat is older than this (GATEWAY_DEAD_AFTER_SECONDS' default) is dead. */
export const DEFAULT_DEAD_AFTER_MS = 30_000;

/** The interrupted-marking job: any live gateway may run it, one at a time. */
export const REAPER_LEASE = 'fleet-reaper';

class Lease implements LeaseView {
  readonly name: string;
  #heldUntil = 0;
  #renewing: Promise<void> | null = null;
  #closed = false;

  constructor(
    name: string,
    private readonly fleet: Fleet,
  ) {
    this.name = name;
  }

  get held(): boolean {
    return !this.#closed && performance.now() < this.#heldUntil;
  }

  /** Takes or renews the lease; a database failure counts as not holding it (a peer may take it on expiry). */
  renew(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#renewing ??= (async () => {
      const { db, logger, metrics } = this.fleet.deps;
      const { gatewayId, deadAfterMs, heartbeatIntervalMs } = this.fleet.options;
      const askedAt = performance.now();
      const wasHeld = this.held;
      try {
        const lease = await db.fleet.acquireLease(this.name, gatewayId, deadAfterMs);
        const mine = lease.holder === gatewayId;
        // Counted from before the request, less one renewal period: a peer can only take it after expires_at.
        this.#heldUntil = mine && !this.#closed ? askedAt + deadAfterMs - heartbeatIntervalMs : 0;
        if (mine && !wasHeld) logger.info({ lease: this.name, gatewayId }, 'fleet lease acquired');
        if (!mine && wasHeld) logger.warn({ lease: this.name, holder: lease.holder }, 'fleet lease lost to a peer');
      } catch (err) {
        metrics.heartbeatFailures.inc();
        logger.warn({ lease: this.name, code: toCallvaultError(err).code, err }, 'fleet lease could not be renewed');
      } finally {
        metrics.fleetLeaseHeld.set({ lease: this.name }, this.held ? 1 : 0);
        this.#renewing = null;
      }
    })();
    return this.#renewing;
  }

  async release(): Promise<void> {
    this.#closed = true;
    await this.#renewing;
    const held = performance.now() < this.#heldUntil;
    this.#heldUntil = 0;
    this.fleet.deps.metrics.fleetLeaseHeld.set({ lease: this.name }, 0);
    if (!held) return;
    try {
      await this.fleet.deps.db.fleet.releaseLease(this.name, this.fleet.options.gatewayId);
      this.fleet.deps.logger.info({ lease: this.name }, 'fleet lease released');
    } catch (err) {
      // It expires on its own; a peer takes it then.
      this.fleet.deps.logger.warn({ lease: this.name, code: toCallvaultError(err).code, err }, 'fleet lease could not be released');
    }
  }
}

export class Fleet implements FleetPort {
  readonly options: FleetOptions;
  readonly deps: FleetDeps;
  readonly #leases = new Map<string, Lease>();
  readonly #stops = new Set<() => void>();
  #timer: NodeJS.Timeout | null = null;
  #beating: Promise<void> | null = null;
  #closed = false;
  #leasesReleased = false;

  constructor(options: FleetOptions, deps: FleetDeps) {
    this.options = options;
    this.deps = deps;
  }

  get gatewayId(): string {
    return this.options.gatewayId;
  }

  get deadAfterMs(): number {
    return this.options.deadAfterMs;
  }

  /** Writes the first heartbeat (failing start-up when the database refuses it), then beats on a timer. */
  async start(): Promise<void> {
    await this.#writeHeartbeat();
    this.#timer = setInterval(() => void this.beat(), this.options.heartbeatIntervalMs);
    this.#timer.unref();
    this.schedule({ name: REAPER_LEASE, intervalMs: this.options.heartbeatIntervalMs, runOnce: () => this.#markDeadPeers() });
  }

  /** One heartbeat: the row, the leases, and the fleet's interrupted count for the metric. Never rejects. */
  beat(): Promise<void> {
    this.#beating ??= (async () => {
      try {
        await this.#writeHeartbeat();
        const resumed = await this.deps.db.recordings.resumeLive(this.gatewayId, this.deps.liveRecordingIds());
        if (resumed > 0) this.deps.logger.info({ resumed }, 'recordings marked interrupted while the heartbeat was late are in progress again');
        this.deps.metrics.fleetInterruptedRecordings.set(await this.deps.db.fleet.countInterrupted());
      } catch (err) {
        this.deps.metrics.heartbeatFailures.inc();
        this.deps.logger.warn({ code: toCallvaultError(err).code, err }, 'gateway heartbeat failed');
      }
      await Promise.all([...this.#leases.values()].map((lease) => lease.renew()));
    })().finally(() => {
      this.#beating = null;
    });
    return this.#beating;
  }

  #writeHeartbeat(): Promise<void> {
    return this.deps.db.fleet.heartbeat({
      id: this.gatewayId,
      version: this.deps.version,
      startedAt: this.deps.startedAt,
      activeCalls: this.deps.activeCalls(),
      internalUrl: this.deps.internalUrl(),
    });
  }

  async #markDeadPeers(): Promise<void> {
    const marked = await this.deps.db.fleet.markInterrupted(this.options.deadAfterMs);
    if (marked.length === 0) return;
    this.deps.metrics.recordingsMarkedInterrupted.inc(marked.length);
    const owners = [...new Set(marked.map((m) => m.ownerGateway))];
    this.deps.logger.warn({ recordings: marked.length, owners }, 'recordings of a dead gateway marked interrupted');
  }

  lease(name: string): LeaseView {
    let lease = this.#leases.get(name);
    if (!lease) {
      lease = new Lease(name, this);
      this.#leases.set(name, lease);
      if (!this.#closed && !this.#leasesReleased) void lease.renew();
      else void lease.release();
    }
    return lease;
  }

  schedule(job: FleetJob): () => void {
    const lease = this.lease(job.name);
    let running = false;
    const run = (): void => {
      if (running || !lease.held || this.#closed) return;
      running = true;
      void job
        .runOnce(this.deps.now())
        .catch((err: unknown) => this.deps.logger.error({ job: job.name, code: toCallvaultError(err).code, err }, 'fleet job failed'))
        .finally(() => {
          running = false;
        });
    };
    const timer = setInterval(run, job.intervalMs);
    timer.unref();
    const stop = (): void => {
      clearInterval(timer);
      this.#stops.delete(stop);
    };
    this.#stops.add(stop);
    return stop;
  }

  gateways(): Promise<GatewayRow[]> {
    return this.deps.db.fleet.list(this.options.deadAfterMs);
  }

  gateway(id: string): Promise<GatewayRow | null> {
    return this.deps.db.fleet.get(id, this.options.deadAfterMs);
  }

  leases(): Promise<LeaseRow[]> {
    return this.deps.db.fleet.leases();
  }

  /**
   * Gives up every fleet-wide job (a draining gateway): the jobs stop and the leases are released, so peers take
   * them at their next heartbeat. The heartbeat itself goes on: the calls still draining here stay this gateway's.
   */
  async releaseLeases(): Promise<void> {
    this.#leasesReleased = true;
    for (const stop of [...this.#stops]) stop();
    await Promise.all([...this.#leases.values()].map((lease) => lease.release()));
  }

  /** Stops the jobs and the heartbeat and releases the leases (before the database pool closes). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.stop();
    await this.#beating;
    await Promise.all([...this.#leases.values()].map((lease) => lease.release()));
  }

  /** Stops the heartbeat and the jobs at once, leaving the leases to expire (a destroyed gateway). */
  stop(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    for (const stop of [...this.#stops]) stop();
  }
}
