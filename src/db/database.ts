import pg from 'pg';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { createAgentsRepository, type AgentsRepository } from './agents.js';
import { createArtifactsRepository, type ArtifactsRepository } from './artifacts.js';
import { createTranscriptionsRepository, type TranscriptionsRepository } from './transcriptions.js';
import { createApiKeysRepository, type ApiKeysRepository } from './api-keys.js';
import { createCallsRepository, type CallsRepository } from './calls.js';
import { createFleetRepository, type FleetRepository } from './fleet.js';
import { translateDbError } from './errors.js';
import type { Executor } from './executor.js';
import { migrations as knownMigrations, type Migration } from './migrations/index.js';
import { createImportsRepository, type ImportsRepository } from './imports.js';
import { createOrganisationsRepository, type OrganisationsRepository } from './organisations.js';
import { createRecordingsRepository, type RecordingsRepository } from './recordings.js';

export interface DatabaseOptions {
  /** postgres:// URL. Never logged: it may carry a password. */
  url: string;
  logger: Logger;
  /** Pool size; defaults to 10. */
  max?: number;
  /** How long to wait for a connection before failing with DATABASE_UNAVAILABLE; defaults to 5000 ms. */
  connectionTimeoutMs?: number;
  /** Per-statement limit on the server; defaults to 30000 ms. Migrations run without it. */
  statementTimeoutMs?: number;
  /** Replaces the built-in migrations; for tests of the migration runner only. */
  migrations?: readonly Migration[];
}

export interface MigrationResult {
  /** Versions applied by this call, ascending; empty when the schema was already current. */
  applied: number[];
}

export interface Database {
  readonly organisations: OrganisationsRepository;
  readonly apiKeys: ApiKeysRepository;
  readonly calls: CallsRepository;
  readonly recordings: RecordingsRepository;
  readonly agents: AgentsRepository;
  readonly imports: ImportsRepository;
  /** Transcript entries and session events posted for calls. */
  readonly artifacts: ArtifactsRepository;
  /** Transcription jobs of recordings (claimed with a lease by the transcription runner). */
  readonly transcriptions: TranscriptionsRepository;
  /** Gateways' heartbeats, fleet-wide job leases, interrupted recordings of dead gateways. */
  readonly fleet: FleetRepository;
  /** Applies pending migrations. Safe to run from several gateways at once. */
  migrate(): Promise<MigrationResult>;
  /** Resolves when the server answers a query; throws DATABASE_UNAVAILABLE otherwise. */
  ping(): Promise<void>;
  /** Ends the pool; later queries throw CLOSED. Idempotent. */
  close(): Promise<void>;
}

// Arbitrary, but fixed forever: every callvault version must serialise on the same advisory lock.
const MIGRATION_LOCK_ID = '4419626051913750871';

function checkMigrations(list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (!Number.isInteger(m.version) || m.version < 1 || (i > 0 && m.version <= list[i - 1]!.version)) {
      throw new CallvaultError(ErrorCode.Internal, 'migration versions must be positive and strictly ascending', {
        details: { version: m.version, name: m.name },
      });
    }
  });
}

export function createDatabase(opts: DatabaseOptions): Database {
  const logger = opts.logger.child({ component: 'db' });
  const migrationList = opts.migrations ?? knownMigrations;
  checkMigrations(migrationList);

  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: opts.statementTimeoutMs ?? 30_000,
    application_name: 'callvault',
  });
  // An idle client losing its connection (server restart, failover) must not crash the process;
  // the pool drops it and the next query reconnects.
  pool.on('error', (err) => {
    logger.warn({ err: translateDbError(err, 'idle') }, 'idle database connection lost');
  });

  let closing: Promise<void> | undefined;

  function assertOpen(operation: string): void {
    if (closing) throw new CallvaultError(ErrorCode.Closed, 'database is closed', { details: { operation } });
  }

  const executor: Executor = {
    async query(operation, text, params) {
      assertOpen(operation);
      try {
        return await pool.query(text, params as unknown[] | undefined);
      } catch (err) {
        throw translateDbError(err, operation);
      }
    },
  };

  async function migrate(): Promise<MigrationResult> {
    assertOpen('migrate');
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw translateDbError(err, 'migrate');
    }
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      // Waiting for another gateway's migration is expected; it must not be cut short by statement_timeout.
      await client.query('SET LOCAL statement_timeout = 0');
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_ID]);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
      const done = new Set(rows.map((r) => r.version));
      const pending = migrationList.filter((m) => !done.has(m.version));
      const newest = migrationList.at(-1)?.version ?? 0;
      const unknown = [...done].filter((v) => v > newest);
      if (unknown.length > 0) {
        logger.warn({ versions: unknown.sort((a, b) => a - b) }, 'database schema is newer than this gateway');
      }
      for (const migration of pending) {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      }
      await client.query('COMMIT');
      const applied = pending.map((m) => m.version);
      if (applied.length > 0) logger.info({ applied }, 'database migrations applied');
      return { applied };
    } catch (err) {
      const translated = translateDbError(err, 'migrate');
      if (translated.code === ErrorCode.DatabaseUnavailable) broken = translated;
      else await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      });
      throw translated;
    } finally {
      // A client whose connection failed mid-transaction is discarded rather than returned to the pool.
      client.release(broken);
    }
  }

  return {
    organisations: createOrganisationsRepository(executor),
    apiKeys: createApiKeysRepository(executor),
    calls: createCallsRepository(executor),
    recordings: createRecordingsRepository(executor),
    agents: createAgentsRepository(executor),
    imports: createImportsRepository(executor),
    artifacts: createArtifactsRepository(executor),
    transcriptions: createTranscriptionsRepository(executor),
    fleet: createFleetRepository(executor),
    migrate,
    async ping() {
      await executor.query('ping', 'SELECT 1');
    },
    close() {
      closing ??= pool.end();
      return closing;
    },
  };
}
