#!/usr/bin/env node
// The whole gateway under real-time Twilio traffic, against a bare uWebSockets.js sink that receives the
// same traffic in the same run (the floor: receiving the frames at all). Both run as child processes and
// only their CPU is counted; the traffic comes from this process.
//
//   npm run load -- --calls 200 --seconds 20 [--rate 16000] [--stereo true] [--database postgres://…]
//
// Starts MinIO (scripts/peers.mjs), uses PostgreSQL at --database (default 127.0.0.1:5432, a fresh
// database per run), and prints CPU per call-second for both, their ratio, calls per core, resident memory
// per call, pipeline latency p50/p99 and finalisation latency from the gateway's /metrics, and frames lost.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { ensurePeer } from '../scripts/peers.mjs';
import { mulawEncode } from '../dist/pipeline/index.js';
import { signStreamUrl } from '../dist/ingest/twilio/index.js';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '20' },
    rate: { type: 'string', default: '16000' },
    stereo: { type: 'string', default: 'true' },
    database: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    'ramp-seconds': { type: 'string', default: '2' },
    /** Writes V8 CPU profiles of the gateway (main thread and workers) into this folder. */
    'cpu-prof': { type: 'string' },
    /** Runs the gateway under `perf record -e cpu-clock -g` (on-CPU samples of every thread, kernel included) into DIR/perf.data. */
    perf: { type: 'string' },
  },
});
const CALLS = Number(values.calls);
const SECONDS = Number(values.seconds);
const RAMP_MS = Number(values['ramp-seconds']) * 1000;
const FRAME_MS = 20;
const CLK_TCK = 100;
const ACCOUNT_SID = `AC${randomBytes(16).toString('hex')}`;
const AUTH_TOKEN = randomBytes(16).toString('hex');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (msg) => process.stderr.write(`[load] ${msg}\n`);

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
async function cpuSeconds(pid) {
  const { user, system } = await cpuSplit(pid);
  return user + system;
}

async function cpuSplit(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK };
}

/** CPU a process burns doing nothing (timers, probes), per second: subtracted from the whole-run figures. */
async function idleCpuPerSecond(pid) {
  const before = await cpuSeconds(pid);
  await sleep(2000);
  return ((await cpuSeconds(pid)) - before) / 2;
}

async function rssBytes(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)[1]) * 1024;
}

function child(command, args, env, name) {
  const proc = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d) => (output += d));
  proc.stderr.on('data', (d) => (output += d));
  proc.on('exit', (code, signal) => {
    if (!proc.stopping) log(`${name} exited (${code ?? signal}):\n${output.slice(-4000)}`);
  });
  return { proc, output: () => output };
}

async function waitFor(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function stop(c) {
  c.proc.stopping = true;
  // Exited already (with a code, or by a signal: then exitCode stays null): 'exit' will not fire again.
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => c.proc.once('exit', resolve));
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

/** Two tones, 20 ms of mu-law each, base64: what every call sends (the payload does not change the cost). */
function payloads() {
  const tone = (hz) => {
    const pcm = new Int16Array(160);
    for (let i = 0; i < 160; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / 8000));
    return Buffer.from(mulawEncode(pcm)).toString('base64');
  };
  return { inbound: tone(400), outbound: tone(1000) };
}

/**
 * Places CALLS real-time two-track calls against `url`, ramped over RAMP_MS, SECONDS long each. Returns
 * the time window in which every call was streaming media and the counts.
 */
async function placeCalls(url, measure) {
  const audio = payloads();
  const signature = signStreamUrl(AUTH_TOKEN, url);
  const calls = [];
  for (let i = 0; i < CALLS; i++) {
    const callSid = `CA${randomBytes(16).toString('hex')}`;
    const streamSid = `MZ${randomBytes(16).toString('hex')}`;
    calls.push({ callSid, streamSid, ws: null, sent: 0, seq: 1, chunk: 1, startAt: Date.now() + (RAMP_MS * i) / CALLS, done: false, closeCode: null });
  }
  const opened = calls.map(
    (call) =>
      new Promise((resolve, reject) => {
        setTimeout(() => {
          const ws = new WebSocket(url, { headers: { 'x-twilio-signature': signature }, perMessageDeflate: false });
          call.ws = ws;
          ws.once('open', () => {
            ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
            ws.send(
              JSON.stringify({
                event: 'start',
                sequenceNumber: String(call.seq++),
                streamSid: call.streamSid,
                start: {
                  accountSid: ACCOUNT_SID,
                  streamSid: call.streamSid,
                  callSid: call.callSid,
                  tracks: ['inbound', 'outbound'],
                  customParameters: {},
                  mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
                },
              }),
            );
            call.mediaStart = Date.now();
            resolve();
          });
          ws.once('error', reject);
          ws.once('close', (code) => (call.closeCode = code));
        }, Math.max(0, call.startAt - Date.now()));
      }),
  );
  const frames = (SECONDS * 1000) / FRAME_MS;
  let window = null;
  // One clock for every call: each sends the frames that are due by now, so pacing stays real-time.
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const call of calls) {
      if (!call.mediaStart || call.done) continue;
      const due = Math.min(frames, Math.floor((now - call.mediaStart) / FRAME_MS) + 1);
      while (call.sent < due) {
        const timestamp = String(call.sent * FRAME_MS);
        for (const track of ['inbound', 'outbound']) {
          call.ws.send(
            `{"event":"media","sequenceNumber":"${call.seq++}","streamSid":"${call.streamSid}","media":{"track":"${track}","chunk":"${call.chunk}","timestamp":"${timestamp}","payload":"${audio[track]}"}}`,
          );
        }
        call.chunk++;
        call.sent++;
      }
      if (call.sent === frames) {
        call.done = true;
        call.ws.send(JSON.stringify({ event: 'stop', sequenceNumber: String(call.seq++), streamSid: call.streamSid, stop: { accountSid: ACCOUNT_SID, callSid: call.callSid } }));
      }
    }
  }, 5);
  await Promise.all(opened);
  // Every call is streaming from here until the first one ends: the window in which CPU is compared.
  const firstEnd = Math.min(...calls.map((c) => c.mediaStart)) + SECONDS * 1000;
  const windowStart = Date.now();
  const before = await measure.begin();
  await sleep(Math.max(0, firstEnd - windowStart - 200));
  window = { seconds: (Date.now() - windowStart) / 1000, ...(await measure.end(before)) };
  await waitFor('every call to finish sending', async () => calls.every((c) => c.done), SECONDS * 1000 + 60_000);
  clearInterval(ticker);
  const stoppedAt = Date.now();
  return { calls, window, stoppedAt, framesSent: calls.reduce((n, c) => n + c.sent * 2, 0) };
}

function measurer(pid) {
  let peak = 0;
  let sampler;
  return {
    async begin() {
      peak = await rssBytes(pid);
      sampler = setInterval(() => rssBytes(pid).then((r) => (peak = Math.max(peak, r)), () => undefined), 250);
      return { cpu: await cpuSeconds(pid) };
    },
    async end(before) {
      clearInterval(sampler);
      return { cpu: (await cpuSeconds(pid)) - before.cpu, peakRss: peak };
    },
  };
}

/** A quantile of a Prometheus histogram from its cumulative buckets (linear within a bucket, like histogram_quantile). */
function histogramQuantile(text, name, q) {
  const buckets = [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => ({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), count: Number(m[2]) }));
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prev = { le: 0, count: 0 };
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prev.le;
      return prev.le + ((b.le - prev.le) * (rank - prev.count)) / Math.max(1, b.count - prev.count);
    }
    prev = b;
  }
  return NaN;
}

const metric = (text, re) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);

async function main() {
  const root = await mkdtemp(join(tmpdir(), 'callvault-load-'));
  const cleanups = [];
  try {
    // MinIO, as the tests run it.
    const minioBin = await ensurePeer('minio');
    const [minioPort, consolePort, gatewayPort] = [await freePort(), await freePort(), await freePort()];
    const s3 = { AWS_ACCESS_KEY_ID: `cv${randomBytes(8).toString('hex')}`, AWS_SECRET_ACCESS_KEY: randomBytes(24).toString('hex') };
    await mkdir(join(root, 'minio'));
    const minio = child(minioBin, ['server', join(root, 'minio'), '--address', `127.0.0.1:${minioPort}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'], { MINIO_ROOT_USER: s3.AWS_ACCESS_KEY_ID, MINIO_ROOT_PASSWORD: s3.AWS_SECRET_ACCESS_KEY, MINIO_UPDATE: 'off', MINIO_BROWSER: 'off' }, 'minio');
    cleanups.push(() => stop(minio));
    await waitFor('MinIO', async () => (await fetch(`http://127.0.0.1:${minioPort}/minio/health/ready`)).ok);

    // A fresh database for this run.
    const dbName = `callvault_load_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: values.database });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    cleanups.push(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
    });
    const databaseUrl = new URL(values.database);
    databaseUrl.pathname = `/${dbName}`;

    // 1. The bare sink.
    const sink = child(process.execPath, ['load/sink.mjs'], {}, 'sink');
    cleanups.push(() => stop(sink));
    const sinkPort = Number(await waitFor('the sink', async () => /listening (\d+)/.exec(sink.output())?.[1]));
    log(`sink: ${CALLS} calls × ${SECONDS} s`);
    const sinkIdle = await idleCpuPerSecond(sink.proc.pid);
    const sinkStart = { cpu: await cpuSplit(sink.proc.pid), at: Date.now() };
    const bare = await placeCalls(`ws://127.0.0.1:${sinkPort}/twilio/media`, measurer(sink.proc.pid));
    const sinkMessages = Number(await (await fetch(`http://127.0.0.1:${sinkPort}/messages`)).text());
    const sinkEnd = { cpu: await cpuSplit(sink.proc.pid), at: Date.now() };
    for (const call of bare.calls) call.ws.close();
    await stop(sink);

    // 2. The gateway.
    const nodeArgs = [...(values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : []), ...(values.perf ? ['--perf-basic-prof'] : []), 'dist/main.js'];
    // --perf: the gateway runs under `perf record` (on-CPU samples only, kernel included); its CPU figures are then perf's process.
    const gateway = child(
      values.perf ? 'perf' : process.execPath,
      values.perf ? ['record', '-e', 'cpu-clock', '-F', '499', '-g', '-o', join(values.perf, 'perf.data'), '--', process.execPath, ...nodeArgs] : nodeArgs,
      {
        ...s3,
        PORT: String(gatewayPort),
        HOST: '127.0.0.1',
        DATA_DIR: join(root, 'data'),
        DATABASE_URL: databaseUrl.toString(),
        S3_ENDPOINT: `http://127.0.0.1:${minioPort}`,
        S3_FORCE_PATH_STYLE: 'true',
        S3_BUCKET: 'callvault-load',
        MASTER_KEY: randomBytes(32).toString('base64'),
        TWILIO_ACCOUNTS: `load:${ACCOUNT_SID}:${AUTH_TOKEN}`,
        API_KEYS: `load:cvload_${randomBytes(16).toString('hex')}`,
        PUBLIC_URL: `http://127.0.0.1:${gatewayPort}`,
        RECORDING_SAMPLE_RATE: values.rate,
        RECORDING_DEFAULT: JSON.stringify({ enabled: true, stereo: values.stereo === 'true' }),
        SPOOL_MIN_FREE_MIB: '0',
        LOG_LEVEL: 'warn',
      },
      'gateway',
    );
    cleanups.push(() => stop(gateway));
    const base = `http://127.0.0.1:${gatewayPort}`;
    await waitFor('the gateway', async () => (await fetch(`${base}/readyz`)).ok);
    await sleep(1000);
    const idleRss = await rssBytes(gateway.proc.pid);
    const gatewayIdle = await idleCpuPerSecond(gateway.proc.pid);
    log(`gateway: ${CALLS} calls × ${SECONDS} s`);
    const gatewayStart = { cpu: await cpuSplit(gateway.proc.pid), at: Date.now() };
    const full = await placeCalls(`ws://127.0.0.1:${gatewayPort}/twilio/media`, measurer(gateway.proc.pid));
    const completed = await waitFor(
      'every recording to complete',
      async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        const done = metric(text, /^callvault_recordings_finished_total\{status="completed"\} (\S+)$/gm);
        return done >= CALLS ? { text, at: Date.now() } : null;
      },
      120_000,
    );
    const gatewayEnd = { cpu: await cpuSplit(gateway.proc.pid), at: Date.now() };
    const text = completed.text;
    const received = metric(text, /^callvault_frames_received_total\{source="twilio"[^}]*\} (\S+)$/gm);
    const dropped = metric(text, /^callvault_frames_dropped_total\{[^}]*\} (\S+)$/gm);
    const failed = metric(text, /^callvault_recordings_finished_total\{status="(?:failed|interrupted)"\} (\S+)$/gm);
    const badCloses = full.calls.filter((c) => c.closeCode !== 1000).length;

    const perCallSecond = (w) => (w.cpu / (CALLS * w.seconds)) * 1e6;
    // The whole run: from the first call to the last recording complete (for the sink: the last frame taken),
    // less idle CPU. A gateway behind the traffic does part of the work after the calls, so this is the
    // figure that counts all of it; the window figure (all calls streaming) is shown beside it.
    const wholeRun = (start, end, idle) => {
      const user = end.cpu.user - start.cpu.user;
      const system = end.cpu.system - start.cpu.system;
      const net = user + system - (idle * (end.at - start.at)) / 1000;
      return { us: (net / (CALLS * SECONDS)) * 1e6, systemShare: system / Math.max(1e-9, user + system) };
    };
    const sinkRun = wholeRun(sinkStart, sinkEnd, sinkIdle);
    const gatewayRun = wholeRun(gatewayStart, gatewayEnd, gatewayIdle);
    const sinkUs = sinkRun.us;
    const gatewayUs = gatewayRun.us;
    const result = {
      calls: CALLS,
      seconds: SECONDS,
      sampleRate: Number(values.rate),
      stereo: values.stereo === 'true',
      sink: { cpuUsPerCallSecond: Math.round(sinkUs), steadyWindowCpuUsPerCallSecond: Math.round(perCallSecond(bare.window)), messages: sinkMessages },
      gateway: {
        cpuUsPerCallSecond: Math.round(gatewayUs),
        steadyWindowCpuUsPerCallSecond: Math.round(perCallSecond(full.window)),
        systemCpuShare: Number(gatewayRun.systemShare.toFixed(2)),
        ratioToSink: Number((gatewayUs / sinkUs).toFixed(2)),
        callsPerCore: Math.floor(1e6 / gatewayUs),
        rssPerCallKiB: Math.round((full.window.peakRss - idleRss) / CALLS / 1024),
        pipelineLatencyMs: { p50: Math.round(histogramQuantile(text, 'callvault_pipeline_latency_seconds', 0.5) * 1000), p99: Math.round(histogramQuantile(text, 'callvault_pipeline_latency_seconds', 0.99) * 1000) },
        finalisationLatencyMs: { p50: Math.round(histogramQuantile(text, 'callvault_recording_finalization_seconds', 0.5) * 1000), p99: Math.round(histogramQuantile(text, 'callvault_recording_finalization_seconds', 0.99) * 1000) },
        framesSent: full.framesSent,
        framesLost: full.framesSent - received + dropped,
        recordingsFailed: failed,
        streamsNotClosedNormally: badCloses,
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (result.gateway.framesLost !== 0 || failed !== 0 || badCloses !== 0) process.exitCode = 1;
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err) => log(`cleanup failed: ${err.message}`));
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`load: ${err.stack ?? err}\n`);
  process.exit(1);
});
