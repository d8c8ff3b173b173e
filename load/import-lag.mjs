#!/usr/bin/env node
// How long the gateway's main thread is blocked while it imports a large ElevenLabs delivery (a 32 MiB
// webhook body: base64 MP3 in JSON). Runs the gateway as a child process (PostgreSQL at --database, the
// embedded S3), posts the delivery, and reads the event-loop lag the gateway itself measured meanwhile
// (prom-client's monitorEventLoopDelay: max and p99), and the slowest /healthz answer during the import.
//
//   npm run build && node load/import-lag.mjs [--mib 24] [--s3 minio|embedded] [--database postgres://…]
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { ensurePeer } from '../scripts/peers.mjs';

const { values } = parseArgs({
  options: { mib: { type: 'string', default: '24' }, s3: { type: 'string', default: 'minio' }, database: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' } },
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

const root = await mkdtemp(join(tmpdir(), 'callvault-import-lag-'));
const dbName = `callvault_lag_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: values.database });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const databaseUrl = new URL(values.database);
databaseUrl.pathname = `/${dbName}`;
const port = await freePort();
const s3Env = {};
let minio;
if (values.s3 === 'minio') {
  const [minioPort, consolePort] = [await freePort(), await freePort()];
  const user = `cv${randomBytes(8).toString('hex')}`;
  const password = randomBytes(24).toString('hex');
  minio = spawn(await ensurePeer('minio'), ['server', join(root, 'minio'), '--address', `127.0.0.1:${minioPort}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'], {
    env: { ...process.env, MINIO_ROOT_USER: user, MINIO_ROOT_PASSWORD: password, MINIO_UPDATE: 'off', MINIO_BROWSER: 'off' },
    stdio: 'ignore',
  });
  for (let i = 0; !(await fetch(`http://127.0.0.1:${minioPort}/minio/health/ready`).then((r) => r.ok, () => false)); i++) {
    if (i > 300) throw new Error('MinIO did not start');
    await sleep(100);
  }
  Object.assign(s3Env, { S3_ENDPOINT: `http://127.0.0.1:${minioPort}`, S3_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: user, AWS_SECRET_ACCESS_KEY: password });
}
const secret = randomBytes(16).toString('hex');
const child = spawn(process.execPath, ['dist/main.js'], {
  env: {
    ...process.env,
    ...s3Env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: join(root, 'data'),
    DATABASE_URL: databaseUrl.toString(),
    MASTER_KEY: randomBytes(32).toString('base64'),
    API_KEYS: `lag:cvlag_${randomBytes(16).toString('hex')}`,
    ELEVENLABS_WEBHOOK_SECRETS: `lag:${secret}`,
    SPOOL_MIN_FREE_MIB: '0',
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const base = `http://127.0.0.1:${port}`;
try {
  for (let i = 0; ; i++) {
    const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 600) throw new Error('gateway did not start');
    await sleep(100);
  }
  // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: 417-byte frames.
  const frames = Math.floor((Number(values.mib) * 1024 * 1024) / 417);
  const mp3 = Buffer.concat(Array.from({ length: frames }, () => Buffer.concat([Buffer.from([0xff, 0xfb, 0x90, 0x64]), randomBytes(413)])));
  const body = JSON.stringify({ type: 'post_call_audio', event_timestamp: Math.floor(Date.now() / 1000), data: { agent_id: 'agent-lag', conversation_id: `conv_${randomBytes(8).toString('hex')}`, full_audio: mp3.toString('base64') } });
  const t = Math.floor(Date.now() / 1000);
  const signature = `t=${t},v0=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
  const metric = async (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${base}/metrics`)).text())?.[1]);
  await sleep(500);
  await metric('callvault_nodejs_eventloop_lag_max_seconds'); // resets the gateway's lag histogram
  let slowestHealthzMs = 0;
  let importing = true;
  const probing = (async () => {
    while (importing) {
      const started = performance.now();
      await fetch(`${base}/healthz`);
      slowestHealthzMs = Math.max(slowestHealthzMs, performance.now() - started);
      await sleep(5);
    }
  })();
  const started = performance.now();
  const res = await fetch(`${base}/webhooks/elevenlabs-post-call`, { method: 'POST', headers: { 'content-type': 'application/json', 'elevenlabs-signature': signature }, body });
  const answer = await res.json();
  const importMs = performance.now() - started;
  importing = false;
  await probing;
  const lagMax = await metric('callvault_nodejs_eventloop_lag_max_seconds');
  const lagP99 = await metric('callvault_nodejs_eventloop_lag_p99_seconds');
  process.stdout.write(
    `${JSON.stringify({ s3: values.s3, bodyMiB: Number((body.length / 1048576).toFixed(1)), status: res.status, outcome: answer.outcome, importMs: Math.round(importMs), eventLoopLagMaxMs: Math.round(lagMax * 1000), eventLoopLagP99Ms: Math.round(lagP99 * 1000), slowestHealthzMs: Math.round(slowestHealthzMs) }, null, 2)}\n`,
  );
} finally {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  minio?.kill('SIGTERM');
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
  await rm(root, { recursive: true, force: true });
}
