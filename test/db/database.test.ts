import { createServer } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { createDatabase, type Database, type Migration } from '../../dist/db/index.js';
import { freshDatabase, postgresAdminUrl } from '../support/peers.js';
import { rejectionOf, silentLogger } from './support.js';
import { migrations } from '../../dist/db/migrations/index.js';

const EXPECTED_TABLES = [
  'agents',
  'api_keys',
  'call_artifact_objects',
  'call_events',
  'call_transcript_entries',
  'call_transcript_imports',
  'calls',
  'fleet_leases',
  'gateways',
  'organisations',
  'recording_transcriptions',
  'recordings',
  'schema_migrations',
  'twilio_recording_requests',
];
const ALL_VERSIONS = migrations.map((m) => m.version);

const opened: Database[] = [];
const databases: Array<{ drop(): Promise<void> }> = [];

function open(url: string, extra: Partial<Parameters<typeof createDatabase>[0]> = {}): Database {
  const db = createDatabase({ url, logger: silentLogger, max: 2, ...extra });
  opened.push(db);
  return db;
}

async function fresh(): Promise<string> {
  const created = await freshDatabase();
  databases.push(created);
  return created.url;
}

async function inspect<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address !== 'object') throw new Error('no port');
  return address.port;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((db) => db.close()));
});

afterAll(async () => {
  await Promise.all(databases.splice(0).map((d) => d.drop()));
});

describe('migrate', () => {
  test('creates the schema once and is a no-op on the next start', async () => {
    const url = await fresh();
    const db = open(url);

    expect(await db.migrate()).toEqual({ applied: ALL_VERSIONS });
    expect(await db.migrate()).toEqual({ applied: [] });

    const tables = await inspect<{ table_name: string }>(
      url,
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
    );
    expect(tables.map((t) => t.table_name)).toEqual(EXPECTED_TABLES);
    const versions = await inspect<{ version: number; name: string }>(url, 'SELECT version, name FROM schema_migrations');
    expect(versions).toEqual([
      { version: 1, name: 'init' },
      { version: 2, name: 'manage' },
      { version: 3, name: 'elevenlabs' },
      { version: 4, name: 'durability' },
      { version: 5, name: 'uploading' },
      { version: 6, name: 'open_uploads' },
      { version: 7, name: 'key_scopes' },
      { version: 8, name: 'signalwire' },
      { version: 9, name: 'agent_identity' },
      { version: 10, name: 'call_artifacts' },
      { version: 12, name: 'transcriptions' },
      { version: 13, name: 'retention' },
      { version: 14, name: 'transcript_imports' },
      { version: 15, name: 'fleet' },
      { version: 16, name: 'sealed_artifacts' },
      { version: 17, name: 'spool_checkpoints' },
    ]);
  });

  test('two gateways migrating at once apply each migration exactly once', async () => {
    const url = await fresh();
    const results = await Promise.all([open(url).migrate(), open(url).migrate(), open(url).migrate()]);

    const applied = results.map((r) => r.applied).sort((a, b) => b.length - a.length);
    expect(applied).toEqual([ALL_VERSIONS, [], []]);
    const versions = await inspect<{ version: number }>(url, 'SELECT version FROM schema_migrations ORDER BY version');
    expect(versions).toEqual(ALL_VERSIONS.map((version) => ({ version })));
  });

  test('later migrations are applied forward-only on top of recorded ones', async () => {
    const url = await fresh();
    const first: Migration = { version: 1, name: 'one', sql: 'CREATE TABLE widgets (id int PRIMARY KEY)' };
    const second: Migration = { version: 2, name: 'two', sql: 'ALTER TABLE widgets ADD COLUMN label text' };

    expect(await open(url, { migrations: [first] }).migrate()).toEqual({ applied: [1] });
    expect(await open(url, { migrations: [first, second] }).migrate()).toEqual({ applied: [2] });

    const columns = await inspect<{ column_name: string }>(
      url,
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets' ORDER BY ordinal_position`,
    );
    expect(columns.map((c) => c.column_name)).toEqual(['id', 'label']);
  });

  test('a failing migration leaves nothing behind, not even the migrations before it in the same run', async () => {
    const url = await fresh();
    const good: Migration = { version: 1, name: 'good', sql: 'CREATE TABLE widgets (id int PRIMARY KEY)' };
    const bad: Migration = { version: 2, name: 'bad', sql: 'ALTER TABLE no_such_table ADD COLUMN x int' };

    const err = await rejectionOf(open(url, { migrations: [good, bad] }).migrate());

    expect(err.code).toBe('INTERNAL');
    expect(err.details).toMatchObject({ operation: 'migrate', sqlState: '42P01' });
    const tables = await inspect<{ table_name: string }>(
      url,
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`,
    );
    expect(tables).toEqual([]);
  });

  test('rejects a migration list that is not strictly ascending', () => {
    const m = (version: number): Migration => ({ version, name: `m${version}`, sql: 'SELECT 1' });
    expect(() => createDatabase({ url: 'postgres://127.0.0.1/x', logger: silentLogger, migrations: [m(2), m(1)] })).toThrow(
      expect.objectContaining({ code: 'INTERNAL' }),
    );
  });
});

describe('ping and close', () => {
  test('ping answers while open; close is idempotent and later use throws CLOSED', async () => {
    const url = await fresh();
    const db = open(url);
    await expect(db.ping()).resolves.toBeUndefined();

    await Promise.all([db.close(), db.close()]);
    await db.close();

    expect(await rejectionOf(db.ping())).toMatchObject({ code: 'CLOSED' });
    expect(await rejectionOf(db.migrate())).toMatchObject({ code: 'CLOSED' });
    expect(await rejectionOf(db.organisations.get('acme'))).toMatchObject({ code: 'CLOSED' });
  });
});

describe('connection problems become DATABASE_UNAVAILABLE', () => {
  test('nothing listening: retryable, with the driver error as cause', async () => {
    const port = await freePort();
    const db = open(`postgres://postgres@127.0.0.1:${port}/postgres`, { connectionTimeoutMs: 2_000 });

    for (const attempt of [db.ping(), db.migrate(), db.apiKeys.verify('acme:devkey-0123456789abcdef')]) {
      const err = await rejectionOf(attempt);
      expect(err).toMatchObject({ name: 'CallvaultError', code: 'DATABASE_UNAVAILABLE', retryable: true });
      expect((err.cause as { code?: string }).code).toBe('ECONNREFUSED');
    }
  });

  test('a database that does not exist: unavailable and not worth retrying', async () => {
    const url = new URL(postgresAdminUrl());
    url.pathname = '/cv_test_this_database_does_not_exist';
    const err = await rejectionOf(open(url.toString()).ping());

    expect(err).toMatchObject({ code: 'DATABASE_UNAVAILABLE', retryable: false, details: { sqlState: '3D000' } });
  });

  test('a connection killed mid-query fails that query as retryable, and the next query reconnects', async () => {
    const url = await fresh();
    const db = open(url, { max: 1 });
    await db.migrate();
    await db.organisations.ensure('acme');

    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query('BEGIN');
      await admin.query('LOCK TABLE organisations IN ACCESS EXCLUSIVE MODE');
      const blocked = rejectionOf(db.organisations.get('acme'));

      // The query is parked on the lock; find its backend and end it as a server restart would.
      let pid: number | undefined;
      while (pid === undefined) {
        const { rows } = await admin.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'callvault' AND wait_event_type = 'Lock'`,
        );
        pid = rows[0]?.pid;
      }
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);

      const err = await blocked;
      expect(err).toMatchObject({ code: 'DATABASE_UNAVAILABLE', retryable: true, details: { sqlState: '57P01' } });
      await admin.query('ROLLBACK');
    } finally {
      await admin.end();
    }

    expect(await db.organisations.get('acme')).toMatchObject({ id: 'acme', name: 'acme' });
  });
});
