import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../../dist/db/embedded.js';

/**
 * A gateway killed with SIGKILL must not leave its embedded PostgreSQL in the way of the next start.
 * The "gateway" here is a child Node process that starts the embedded server and prints its URL.
 */
let root: string;
let script: string;
const children: ChildProcess[] = [];
const strays: number[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cv-embedded-stale-'));
  // Under root, PostgreSQL runs as the `postgres` user, which must traverse into the temp dir.
  await chmod(root, 0o711);
  script = join(root, 'gateway.mjs');
  const moduleUrl = pathToFileURL(resolve('dist/db/embedded.js')).href;
  await writeFile(
    script,
    [
      `import { startEmbeddedPostgres } from ${JSON.stringify(moduleUrl)};`,
      `const pg = await startEmbeddedPostgres({ dataDir: process.argv[2], port: 0 });`,
      `process.stdout.write(JSON.stringify({ url: pg.url }) + '\\n');`,
      `setInterval(() => undefined, 1 << 30);`,
    ].join('\n'),
  );
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  await rm(root, { recursive: true, force: true });
});

/** Starts the child "gateway" on dataDir; resolves with its URL once the server is ready. */
async function startGateway(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolveUrl, reject) => {
    lines.once('line', (line) => resolveUrl((JSON.parse(line) as { url: string }).url));
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}) before starting: ${stderr}`)));
  });
  return { child, url };
}

async function killGateway(child: ChildProcess): Promise<void> {
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGKILL');
  await exited;
}

async function postmasterPid(dataDir: string): Promise<number> {
  const text = await readFile(join(dataDir, 'pgdata', 'postmaster.pid'), 'utf8');
  return Number.parseInt(text.split('\n')[0]!, 10);
}

/** Alive and not a zombie: an orphan's exit is reaped by whoever adopted it, maybe never. */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The watchdog the embedded server's starter spawned: a child of it named callvault-pg-watchdog. */
async function watchdogOf(parentPid: number): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    let cmdline: string;
    try {
      [stat, cmdline] = await Promise.all([readFile(`/proc/${entry}/stat`, 'utf8'), readFile(`/proc/${entry}/cmdline`, 'utf8')]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // exited while we looked
      throw err;
    }
    const ppid = Number.parseInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]!, 10);
    if (ppid === parentPid && cmdline.split('\0').includes('callvault-pg-watchdog')) return Number.parseInt(entry, 10);
  }
  throw new Error(`no watchdog under ${parentPid}`);
}

async function createKeptTable(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('CREATE TABLE kept (v text)');
    await c.query(`INSERT INTO kept VALUES ('from the killed run')`);
  } finally {
    await c.end();
  }
}

async function readKeptTable(url: string): Promise<unknown[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query('SELECT v FROM kept')).rows;
  } finally {
    await c.end();
  }
}

function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('embedded PostgreSQL after its starter is killed with SIGKILL', () => {
  test('stops by itself with its starter, and the next start finds the earlier data', async () => {
    const dataDir = join(root, 'watchdog');
    const { child, url } = await startGateway(dataDir);
    await createKeptTable(url);
    const pid = await postmasterPid(dataDir);
    expect(await alive(pid)).toBe(true);

    await killGateway(child);
    await expect.poll(() => alive(pid), { timeout: 30_000, interval: 100 }).toBe(false);

    const { logger } = capturingLogger();
    const again = await startEmbeddedPostgres({ dataDir, port: 0, logger });
    try {
      expect(await readKeptTable(again.url)).toEqual([{ v: 'from the killed run' }]);
    } finally {
      await again.stop();
    }
  }, 180_000);

  test('a start stops an orphaned postmaster of its cluster, then connects to the earlier data', async () => {
    const dataDir = join(root, 'orphan');
    const { child, url } = await startGateway(dataDir);
    await createKeptTable(url);
    const pid = await postmasterPid(dataDir);
    strays.push(pid);
    // Without its watchdog the server has nothing telling it its starter died: a true orphan.
    process.kill(await watchdogOf(child.pid!), 'SIGKILL');
    await killGateway(child);
    await new Promise((done) => setTimeout(done, 500));
    expect(await alive(pid)).toBe(true);

    const { logger, lines } = capturingLogger();
    const again = await startEmbeddedPostgres({ dataDir, port: 0, logger });
    try {
      expect(await alive(pid)).toBe(false);
      expect(await readKeptTable(again.url)).toEqual([{ v: 'from the killed run' }]);
      expect(lines).toContainEqual(
        expect.objectContaining({ pid, msg: 'stopping a stale embedded PostgreSQL left running by an earlier process' }),
      );
      expect(lines).toContainEqual(expect.objectContaining({ pid, msg: 'stale embedded PostgreSQL stopped' }));
    } finally {
      await again.stop();
    }
  }, 180_000);

  test('a lock file naming a live process of another program is removed, not obeyed', async () => {
    const dataDir = join(root, 'reused-pid');
    const first = await startEmbeddedPostgres({ dataDir, port: 0 });
    try {
      await createKeptTable(first.url);
    } finally {
      await first.stop();
    }
    const other = spawn('sleep', ['120'], { stdio: 'ignore' });
    children.push(other);
    const pidFile = join(dataDir, 'pgdata', 'postmaster.pid');
    await writeFile(pidFile, `${other.pid}\n${join(dataDir, 'pgdata')}\n0\n5432\n\n\n0 0\nstopping\n`);

    const { logger, lines } = capturingLogger();
    const again = await startEmbeddedPostgres({ dataDir, port: 0, logger });
    try {
      expect(await readKeptTable(again.url)).toEqual([{ v: 'from the killed run' }]);
      expect(lines).toContainEqual(
        expect.objectContaining({ pid: other.pid, msg: 'removing a stale embedded PostgreSQL lock file: its PID now belongs to another program' }),
      );
      expect(await alive(other.pid!)).toBe(true);
    } finally {
      await again.stop();
      other.kill('SIGKILL');
    }
  }, 180_000);
});
