/**
 * The fleet's shared state in PostgreSQL: each gateway's heartbeat row, the leases fleet-wide jobs run under,
 * and the sweep that marks a dead gateway's recordings interrupted. Every age is measured on the database's
 * clock (now()), so gateways with skewed clocks still agree on who is alive and who holds a lease.
 */
import type { Executor } from './executor.js';

export interface GatewayRow {
  id: string;
  version: string;
  startedAt: Date;
  lastHeartbeat: Date;
  /** Milliseconds since the last heartbeat, on the database's clock. */
  heartbeatAgeMs: number;
  activeCalls: number;
  internalUrl: string | null;
  /** The heartbeat is younger than the dead-after timeout it was listed with. */
  alive: boolean;
}

export interface HeartbeatInput {
  id: string;
  version: string;
  startedAt: Date;
  activeCalls: number;
  internalUrl: string | null;
}

export interface LeaseRow {
  name: string;
  holder: string;
  acquiredAt: Date;
  expiresAt: Date;
}

export interface FleetRepository {
  /** Upserts the gateway's row with last_heartbeat = now(). */
  heartbeat(input: HeartbeatInput): Promise<void>;
  /** Every gateway that ever heartbeat, with `alive` judged against `deadAfterMs`; ordered by id. */
  list(deadAfterMs: number): Promise<GatewayRow[]>;
  /** One gateway, or null when it never heartbeat. */
  get(id: string, deadAfterMs: number): Promise<GatewayRow | null>;
  /**
   * Takes or renews the lease `name` for `ttlMs` when it is free, expired or already `holder`'s. Returns the
   * lease as it stands afterwards (whoever holds it).
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<LeaseRow>;
  /** Gives the lease up if `holder` holds it, so a peer takes it at once instead of after its expiry. */
  releaseLease(name: string, holder: string): Promise<void>;
  leases(): Promise<LeaseRow[]>;
  /**
   * in_progress / uploading → interrupted for recordings owned by a gateway whose heartbeat is older than
   * `deadAfterMs`. Returns the recordings marked (id, owner).
   */
  markInterrupted(deadAfterMs: number): Promise<Array<{ id: string; ownerGateway: string }>>;
  /** How many recordings are interrupted across the fleet. */
  countInterrupted(): Promise<number>;
}

interface GatewayDbRow {
  id: string;
  version: string;
  started_at: Date;
  last_heartbeat: Date;
  age_ms: string | number;
  active_calls: number;
  internal_url: string | null;
  alive: boolean;
}

interface LeaseDbRow {
  name: string;
  holder: string;
  acquired_at: Date;
  expires_at: Date;
}

const GATEWAY_COLUMNS = `id, version, started_at, last_heartbeat, active_calls, internal_url,
  (extract(epoch FROM (now() - last_heartbeat)) * 1000)::float8 AS age_ms,
  last_heartbeat > now() - make_interval(secs => $1::float8 / 1000) AS alive`;

function toGateway(row: GatewayDbRow): GatewayRow {
  return {
    id: row.id,
    version: row.version,
    startedAt: row.started_at,
    lastHeartbeat: row.last_heartbeat,
    heartbeatAgeMs: Math.max(0, Math.round(Number(row.age_ms))),
    activeCalls: row.active_calls,
    internalUrl: row.internal_url,
    alive: row.alive,
  };
}

function toLease(row: LeaseDbRow): LeaseRow {
  return { name: row.name, holder: row.holder, acquiredAt: row.acquired_at, expiresAt: row.expires_at };
}

export function createFleetRepository(db: Executor): FleetRepository {
  return {
    async heartbeat({ id, version, startedAt, activeCalls, internalUrl }) {
      await db.query(
        'fleet.heartbeat',
        `INSERT INTO gateways (id, version, started_at, last_heartbeat, active_calls, internal_url)
         VALUES ($1, $2, $3, now(), $4, $5)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, started_at = EXCLUDED.started_at,
           last_heartbeat = now(), active_calls = EXCLUDED.active_calls, internal_url = EXCLUDED.internal_url`,
        [id, version, startedAt, activeCalls, internalUrl],
      );
    },

    async list(deadAfterMs) {
      const { rows } = await db.query<GatewayDbRow>('fleet.list', `SELECT ${GATEWAY_COLUMNS} FROM gateways ORDER BY id`, [deadAfterMs]);
      return rows.map(toGateway);
    },

    async get(id, deadAfterMs) {
      const { rows } = await db.query<GatewayDbRow>('fleet.get', `SELECT ${GATEWAY_COLUMNS} FROM gateways WHERE id = $2`, [deadAfterMs, id]);
      return rows[0] ? toGateway(rows[0]) : null;
    },

    async acquireLease(name, holder, ttlMs) {
      // One statement: two gateways racing for a free or expired lease serialise on the row; one wins.
      const taken = await db.query<LeaseDbRow>(
        'fleet.acquireLease',
        `INSERT INTO fleet_leases (name, holder, acquired_at, expires_at)
         VALUES ($1, $2, now(), now() + make_interval(secs => $3::float8 / 1000))
         ON CONFLICT (name) DO UPDATE SET
           holder = EXCLUDED.holder,
           acquired_at = CASE WHEN fleet_leases.holder = EXCLUDED.holder THEN fleet_leases.acquired_at ELSE now() END,
           expires_at = EXCLUDED.expires_at
         WHERE fleet_leases.holder = EXCLUDED.holder OR fleet_leases.expires_at <= now()
         RETURNING name, holder, acquired_at, expires_at`,
        [name, holder, ttlMs],
      );
      if (taken.rows[0]) return toLease(taken.rows[0]);
      const { rows } = await db.query<LeaseDbRow>('fleet.lease', 'SELECT name, holder, acquired_at, expires_at FROM fleet_leases WHERE name = $1', [name]);
      // Taken by a peer (the row exists: the upsert found it held and unexpired).
      return toLease(rows[0]!);
    },

    async releaseLease(name, holder) {
      await db.query('fleet.releaseLease', 'DELETE FROM fleet_leases WHERE name = $1 AND holder = $2', [name, holder]);
    },

    async leases() {
      const { rows } = await db.query<LeaseDbRow>('fleet.leases', 'SELECT name, holder, acquired_at, expires_at FROM fleet_leases ORDER BY name');
      return rows.map(toLease);
    },

    async markInterrupted(deadAfterMs) {
      const { rows } = await db.query<{ id: string; owner_gateway: string }>(
        'fleet.markInterrupted',
        `UPDATE recordings SET status = 'interrupted', updated_at = now()
         WHERE status IN ('in_progress', 'uploading')
           AND owner_gateway IN (SELECT id FROM gateways WHERE last_heartbeat <= now() - make_interval(secs => $1::float8 / 1000))
         RETURNING id, owner_gateway`,
        [deadAfterMs],
      );
      return rows.map((r) => ({ id: r.id, ownerGateway: r.owner_gateway }));
    },

    async countInterrupted() {
      const { rows } = await db.query<{ n: string }>('fleet.countInterrupted', `SELECT count(*) AS n FROM recordings WHERE status = 'interrupted'`);
      return Number(rows[0]?.n ?? 0);
    },
  };
}
