/**
 * Starts the real peers (MinIO, PostgreSQL) once per vitest run and publishes where they are
 * through process.env, which the forked test workers inherit (see test/support/peers.ts).
 *
 * PostgreSQL: CALLVAULT_TEST_DATABASE_URL when already set, else the local server on 5432 when it
 * answers, else an embedded cluster (needs `npx tsc -p .` first: it is loaded from dist/).
 * CALLVAULT_TEST_POSTGRES=embedded skips the local server, to exercise the embedded path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ensurePeer } from '../../scripts/peers.mjs';
import { startLivekitServer } from './livekit.js';
import { freePorts } from './ports.js';

const LOCAL_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const POSTGRES_PROBE_TIMEOUT_MS = 2_000;
// A cold MinIO on a busy two-core machine can take a while to format its drive.
const MINIO_READY_DEADLINE_MS = 60_000;
const MINIO_STOP_DEADLINE_MS = 10_000;

type Cleanup = () => Promise<void>;

export default async function setup(): Promise<() => Promise<void>> {
  const cleanups: Cleanup[] = [];
  const teardown = async () => {
    // Reverse order: whatever was started last depends on what was created first (the temp dir).
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => {
        process.stderr.write(`[peers] teardown step failed: ${String(err)}\n`);
      });
    }
  };
  try {
    const root = await mkdtemp(join(tmpdir(), 'callvault-peers-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));

    const [minio, databaseUrl] = await Promise.all([startMinio(root, cleanups), startPostgres(root, cleanups)]);

    process.env.CALLVAULT_TEST_DATABASE_URL = databaseUrl;
    process.env.CALLVAULT_TEST_S3_ENDPOINT = minio.endpoint;
    process.env.CALLVAULT_TEST_S3_ACCESS_KEY_ID = minio.accessKeyId;
    process.env.CALLVAULT_TEST_S3_SECRET_ACCESS_KEY = minio.secretAccessKey;

    const livekit = await startLivekitServer();
    cleanups.push(() => livekit.stop());
    process.env.CALLVAULT_TEST_LIVEKIT_URL = livekit.url;
    process.env.CALLVAULT_TEST_LIVEKIT_API_KEY = livekit.apiKey;
    process.env.CALLVAULT_TEST_LIVEKIT_API_SECRET = livekit.apiSecret;
    process.env.CALLVAULT_TEST_LIVEKIT_WEBHOOK_RELAY = livekit.webhookRelayUrl;
  } catch (err) {
    await teardown();
    throw err;
  }
  return teardown;
}

async function startMinio(
  root: string,
  cleanups: Cleanup[],
): Promise<{ endpoint: string; accessKeyId: string; secretAccessKey: string }> {
  const binary = await ensurePeer('minio');
  const dataDir = join(root, 'minio-data');
  await mkdir(dataDir);
  const [port, consolePort] = await freePorts(2);
  const accessKeyId = `cv${randomBytes(8).toString('hex')}`;
  const secretAccessKey = randomBytes(24).toString('hex');
  const logPath = join(root, 'minio.log');
  const log = createWriteStream(logPath);

  const child = spawn(
    binary,
    ['server', dataDir, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'],
    {
      env: {
        ...process.env,
        MINIO_ROOT_USER: accessKeyId,
        MINIO_ROOT_PASSWORD: secretAccessKey,
        MINIO_UPDATE: 'off',
        MINIO_BROWSER: 'off',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  // If vitest dies without running teardown, MinIO must not outlive it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  cleanups.push(async () => {
    process.removeListener('exit', killOnExit);
    await stopChild(child, MINIO_STOP_DEADLINE_MS);
    await closeStream(log);
  });

  const endpoint = `http://127.0.0.1:${port}`;
  await waitForMinio(endpoint, child, logPath);
  return { endpoint, accessKeyId, secretAccessKey };
}

async function waitForMinio(endpoint: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + MINIO_READY_DEADLINE_MS;
  let lastProblem = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`MinIO exited during start-up (${child.exitCode ?? child.signalCode}):\n${await tail(logPath)}`);
    }
    try {
      const res = await fetch(`${endpoint}/minio/health/ready`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      lastProblem = `status ${res.status}`;
    } catch (err) {
      lastProblem = err instanceof Error ? err.message : String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`MinIO not ready within ${MINIO_READY_DEADLINE_MS} ms (${lastProblem}):\n${await tail(logPath)}`);
}

async function startPostgres(root: string, cleanups: Cleanup[]): Promise<string> {
  const preset = process.env.CALLVAULT_TEST_DATABASE_URL;
  if (preset) return preset;
  const forceEmbedded = process.env.CALLVAULT_TEST_POSTGRES === 'embedded';
  if (!forceEmbedded && (await postgresAnswers(LOCAL_POSTGRES_URL))) return LOCAL_POSTGRES_URL;

  const { startEmbeddedPostgres } = await import('../../dist/db/embedded.js');
  // Under root the server runs as the `postgres` user, which must be able to traverse the temp root.
  await chmod(root, 0o711);
  const server = await startEmbeddedPostgres({ dataDir: join(root, 'postgres'), port: 0 });
  cleanups.push(() => server.stop());
  const url = new URL(server.url);
  // Tests create their own databases; the admin URL points at the maintenance database.
  url.pathname = '/postgres';
  return url.toString();
}

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: POSTGRES_PROBE_TIMEOUT_MS });
  // A refused or reset connection surfaces here as well as from connect(); it must not crash the run.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function stopChild(child: ChildProcess, deadlineMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), deadlineMs);
  });
  const forced = await Promise.race([exited.then(() => false), timedOut]);
  clearTimeout(timer);
  if (forced) {
    child.kill('SIGKILL');
    await exited;
  }
}

function closeStream(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => stream.end(() => resolve()));
}

async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').slice(-30).join('\n');
}

