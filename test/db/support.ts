import { createHash } from 'node:crypto';
import pg from 'pg';
import { createDatabase, type Database } from '../../dist/db/index.js';
import { createLogger } from '../../dist/log/index.js';
import { freshDatabase } from '../support/peers.js';

export const silentLogger = createLogger({ level: 'silent' });

export interface TestDatabase {
  db: Database;
  url: string;
  /** A plain client for seeding and for inspecting what the repositories actually stored. */
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<R[]>;
  dispose(): Promise<void>;
}

/** A migrated, empty database of its own, so test files never see each other's rows. */
export async function openTestDatabase(options: { max?: number } = {}): Promise<TestDatabase> {
  const fresh = await freshDatabase();
  const db = createDatabase({ url: fresh.url, logger: silentLogger, max: options.max ?? 4 });
  await db.migrate();
  const client = new pg.Client({ connectionString: fresh.url });
  await client.connect();
  return {
    db,
    url: fresh.url,
    async sql<R extends pg.QueryResultRow>(text: string, params?: unknown[]) {
      return (await client.query<R>(text, params)).rows;
    },
    async dispose() {
      await db.close();
      await client.end();
      await fresh.drop();
    },
  };
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Settles a promise that is expected to reject, returning what it rejected with. */
export async function rejectionOf(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}
