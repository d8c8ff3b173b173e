#!/usr/bin/env node
// The whole gateway under real-time traffic, against a bare uWebSockets.js sink that receives the same traffic
// in the same run (the floor: receiving the frames at all). Both run as child processes and only their CPU is
// counted; the traffic comes from this process.
//
//   npm run load -- --calls 200 --seconds 20 [--source twilio|livekit|twilio,livekit] [--rate 16000]
//                   [--stereo true] [--database postgres://…] [--cpu-prof DIR] [--perf DIR]
//
// --source twilio: two-track Twilio Media Streams calls (signed upgrades, 20 ms mu-law frames per track).
// --source livekit: LiveKit rooms recorded through Track Egress WebSockets, one per participant (caller and
// agent), 20 ms binary pcm_s16le frames at 48 kHz on URLs signed with the gateway's master key, the room's SID
// in the URL (the gateway never asks LiveKit about the room: LIVEKIT_URL points where nothing listens, so a
// lookup would fail the run). Several sources run one after the other, each against its own sink and its own
// gateway process of the same build and configuration, and the LiveKit/Twilio cost ratio is printed.
//
// Starts MinIO (scripts/peers.mjs), uses PostgreSQL at --database (default 127.0.0.1:5432, a fresh database
// per run), and prints per source CPU per call-second for both, their ratio, calls per core, resident memory
// per call, pipeline latency p50/p99 and finalisation latency from the gateway's /metrics, frames lost, and
// what every recording holds (its row's duration against the audio sent; its WAV, fetched through the API:
// length, and the caller's and the agent's tone each in its own channel). Exits 1 when anything was lost,
// failed or wrong.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { z } from 'zod';
import { ensurePeer } from '../scripts/peers.mjs';
import { mulawEncode } from '../dist/pipeline/index.js';
import { signStreamUrl } from '../dist/ingest/twilio/index.js';
import { signEgressUrl, LIVEKIT_EGRESS_PATH } from '../dist/ingest/livekit/index.js';
import { parseWav } from '../dist/audio/wav.js';

const SOURCES = ['twilio', 'livekit'];
const ArgsSchema = z.object({
  calls: z.coerce.number().int().min(1),
  seconds: z.coerce.number().positive(),
  source: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()))
    .pipe(z.array(z.enum(SOURCES)).min(1).refine((list) => new Set(list).size === list.length, 'a source is named twice')),
  rate: z.coerce.number().pipe(z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)])),
  stereo: z.enum(['true', 'false']).transform((s) => s === 'true'),
  database: z.string().url(),
  'ramp-seconds': z.coerce.number().min(0),
  'cpu-prof': z.string().min(1).optional(),
  perf: z.string().min(1).optional(),
});
const { values: rawArgs } = parseArgs({
  options: {
    calls: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '20' },
    /** twilio, livekit, or both (comma-separated): each against its own sink and gateway, one after the other. */
    source: { type: 'string', default: 'twilio' },
    rate: { type: 'string', default: '16000' },
    stereo: { type: 'string', default: 'true' },
    database: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    'ramp-seconds': { type: 'string', default: '2' },
    /** Writes V8 CPU profiles of the gateway (main thread and workers) into this folder (DIR/<source> with several sources). */
    'cpu-prof': { type: 'string' },
    /** Runs the gateway under `perf record -e cpu-clock -g` (on-CPU samples of every thread, kernel included) into DIR/perf.data (DIR/<source>/perf.data with several sources). */
    perf: { type: 'string' },
  },
});
const parsedArgs = ArgsSchema.safeParse(rawArgs);
if (!parsedArgs.success) {
  process.stderr.write(`load: ${parsedArgs.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ')}\n`);
  process.exit(2);
}
const args = parsedArgs.data;
const CALLS = args.calls;
const SECONDS = args.seconds;
const RAMP_MS = args['ramp-seconds'] * 1000;
const FRAME_MS = 20;
const FRAMES_PER_TRACK = Math.round((SECONDS * 1000) / FRAME_MS);
const CLK_TCK = 100;
const ACCOUNT_SID = `AC${randomBytes(16).toString('hex')}`;
const AUTH_TOKEN = randomBytes(16).toString('hex');
const MASTER_KEY = randomBytes(32);
const API_KEY = `cvload_${randomBytes(16).toString('hex')}`;
const ORG = 'load';
/** Track Egress sends the source rate: 48 kHz for Opus tracks. */
const EGRESS_RATE = 48_000;
/** An egress-started room recording ends this long after its last socket closed (the gateway's default is 5 s). */
const EGRESS_GRACE_SECONDS = 0.5;
/** The caller's (Twilio inbound, LiveKit caller) and the agent's (outbound, agent) tones: whole cycles per 20 ms. */
const CALLER_HZ = 400;
const AGENT_HZ = 1000;
const AMPLITUDE = 8000;

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

/** Bytes a process has caused to be written to storage so far (its journal and spool), from /proc. */
async function writeBytes(pid) {
  const io = await readFile(`/proc/${pid}/io`, 'utf8');
  return Number(/^write_bytes:\s+(\d+)$/m.exec(io)[1]);
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

/** 20 ms of a tone as 16-bit samples at `rate`. */
function toneFrame(hz, rate) {
  const samples = (rate * FRAME_MS) / 1000;
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i++) pcm[i] = Math.round(AMPLITUDE * Math.sin((2 * Math.PI * hz * i) / rate));
  return pcm;
}

/** What every call sends (the payload does not change the cost): per track one 20 ms frame, repeated. */
const AUDIO = {
  twilio: { inbound: Buffer.from(mulawEncode(toneFrame(CALLER_HZ, 8000))).toString('base64'), outbound: Buffer.from(mulawEncode(toneFrame(AGENT_HZ, 8000))).toString('base64') },
  livekit: { caller: Buffer.from(toneFrame(CALLER_HZ, EGRESS_RATE).buffer), agent: Buffer.from(toneFrame(AGENT_HZ, EGRESS_RATE).buffer) },
};

/**
 * One Twilio call: one socket carrying both tracks. `frame` sends one 20 ms frame of each track and returns
 * how many frames it sent; `end` sends `stop` (the gateway then closes the socket).
 */
function twilioCall(base) {
  const url = `${base}/twilio/media`;
  const signature = signStreamUrl(AUTH_TOKEN, url);
  const callSid = `CA${randomBytes(16).toString('hex')}`;
  const streamSid = `MZ${randomBytes(16).toString('hex')}`;
  let seq = 1;
  let chunk = 1;
  return {
    id: callSid,
    streams: [
      {
        url,
        headers: { 'x-twilio-signature': signature },
        open(ws) {
          ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
          ws.send(
            JSON.stringify({
              event: 'start',
              sequenceNumber: String(seq++),
              streamSid,
              start: {
                accountSid: ACCOUNT_SID,
                streamSid,
                callSid,
                tracks: ['inbound', 'outbound'],
                customParameters: {},
                mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
              },
            }),
          );
        },
        frame(ws, index) {
          const timestamp = String(index * FRAME_MS);
          for (const track of ['inbound', 'outbound']) {
            ws.send(
              `{"event":"media","sequenceNumber":"${seq++}","streamSid":"${streamSid}","media":{"track":"${track}","chunk":"${chunk}","timestamp":"${timestamp}","payload":"${AUDIO.twilio[track]}"}}`,
            );
          }
          chunk++;
          return 2;
        },
        end(ws) {
          ws.send(JSON.stringify({ event: 'stop', sequenceNumber: String(seq++), streamSid, stop: { accountSid: ACCOUNT_SID, callSid } }));
        },
      },
    ],
  };
}

/**
 * One LiveKit room: the caller's and the agent's track, each on its own Track Egress socket, as LiveKit sends
 * them: binary pcm_s16le frames; the egress closes its socket (1000) when the track ends.
 */
function livekitCall(base) {
  const room = `load-${randomBytes(6).toString('hex')}`;
  const roomSid = `RM_${randomBytes(8).toString('hex')}`;
  const expiresAtMs = Date.now() + (SECONDS + RAMP_MS / 1000 + 3600) * 1000;
  return {
    id: roomSid,
    streams: ['caller', 'agent'].map((role) => ({
      url: signEgressUrl(base, { room, roomSid, participant: `${role}-1`, track: `TR_${role}`, role, sampleRate: EGRESS_RATE }, { masterKey: MASTER_KEY, expiresAtMs }),
      headers: {},
      open() {},
      frame(ws) {
        ws.send(AUDIO.livekit[role], { binary: true });
        return 1;
      },
      end(ws) {
        ws.close(1000);
      },
    })),
  };
}

/**
 * Places CALLS real-time calls of `source` against `base` (ws://host:port), ramped over RAMP_MS, SECONDS long
 * each. Returns the calls, the time window in which every stream was sending media, and the counts.
 */
async function placeCalls(source, base, measure) {
  const calls = [];
  for (let i = 0; i < CALLS; i++) {
    const call = source === 'twilio' ? twilioCall(base) : livekitCall(base);
    const startAt = Date.now() + (RAMP_MS * i) / CALLS;
    calls.push({ ...call, streams: call.streams.map((s) => ({ ...s, ws: null, mediaStart: 0, sent: 0, frames: 0, done: false, closeCode: null, startAt })) });
  }
  const streams = calls.flatMap((c) => c.streams);
  const opened = streams.map(
    (stream) =>
      new Promise((resolve, reject) => {
        setTimeout(() => {
          const ws = new WebSocket(stream.url, { headers: stream.headers, perMessageDeflate: false });
          stream.ws = ws;
          ws.once('open', () => {
            stream.open(ws);
            stream.mediaStart = Date.now();
            resolve();
          });
          ws.once('error', reject);
          ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade of ${source} stream refused: HTTP ${res.statusCode}`)));
          ws.once('close', (code) => (stream.closeCode = code));
        }, Math.max(0, stream.startAt - Date.now()));
      }),
  );
  // One clock for every stream: each sends the frames that are due by now, so pacing stays real-time.
  // The longest pause between ticks says how late the driver itself ever sent (a stall sends a burst).
  let lastTick = 0;
  let maxTickGapMs = 0;
  const ticker = setInterval(() => {
    const now = Date.now();
    if (lastTick && streams.some((s) => s.mediaStart && !s.done)) maxTickGapMs = Math.max(maxTickGapMs, now - lastTick);
    lastTick = now;
    for (const stream of streams) {
      if (!stream.mediaStart || stream.done) continue;
      const due = Math.min(FRAMES_PER_TRACK, Math.floor((now - stream.mediaStart) / FRAME_MS) + 1);
      while (stream.sent < due) stream.frames += stream.frame(stream.ws, stream.sent++);
      if (stream.sent === FRAMES_PER_TRACK) {
        stream.done = true;
        stream.end(stream.ws);
      }
    }
  }, 5);
  await Promise.all(opened);
  // Every stream is sending from here until the first one ends: the window in which CPU is compared.
  const firstEnd = Math.min(...streams.map((s) => s.mediaStart)) + SECONDS * 1000;
  const windowStart = Date.now();
  const before = await measure.begin();
  await sleep(Math.max(0, firstEnd - windowStart - 200));
  const window = { seconds: (Date.now() - windowStart) / 1000, ...(await measure.end(before)) };
  await waitFor('every call to finish sending', async () => streams.every((s) => s.done), SECONDS * 1000 + 60_000);
  clearInterval(ticker);
  return { calls, streams, window, maxTickGapMs, framesSent: streams.reduce((n, s) => n + s.frames, 0) };
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

/** A counter's total over the series whose labels include every one of `labels` (in any order; a RegExp value matches the label's whole value). */
function counter(text, name, labels = {}) {
  const wanted = Object.entries(labels).map(([k, v]) => new RegExp(`(?:^|,)${k}="(?:${v instanceof RegExp ? v.source : v})"`));
  return [...text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))]
    .filter((m) => wanted.every((re) => re.test(m[1] ?? '')))
    .reduce((n, m) => n + Number(m[2]), 0);
}

/** Peak amplitude of the component at `hz` (Hann window, evaluated exactly at `hz`). */
function toneAmplitude(samples, rate, hz) {
  const n = samples.length;
  if (n === 0) return 0;
  const omega = (2 * Math.PI * hz) / rate;
  let re = 0;
  let im = 0;
  let windowSum = 0;
  for (let i = 0; i < n; i++) {
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * (i + 0.5)) / n);
    windowSum += w;
    re += samples[i] * w * Math.cos(omega * i);
    im -= samples[i] * w * Math.sin(omega * i);
  }
  return (2 * Math.hypot(re, im)) / windowSum;
}

/**
 * What a recording holds, fetched as the API serves it (a WAV decrypted on the fly): its length against the audio
 * sent, and each tone where it belongs (stereo: caller left, agent right; mono: both in the one channel), measured
 * 0.5 s clear of each end (a LiveKit room's second track starts a few ms after the first).
 */
async function checkAudio(gatewayBase, callId) {
  const res = await fetch(`${gatewayBase}/calls/${encodeURIComponent(callId)}/recording`, { headers: { authorization: `Bearer ${API_KEY}` } });
  if (res.status !== 200) return { ok: false, why: `GET recording answered ${res.status}` };
  const wav = parseWav(new Uint8Array(await res.arrayBuffer()));
  const frames = wav.samples.length / wav.channels;
  const channel = (c) => {
    const out = new Int16Array(frames);
    for (let i = 0; i < frames; i++) out[i] = wav.samples[i * wav.channels + c];
    return out;
  };
  const sentSamples = SECONDS * wav.sampleRate;
  if (wav.sampleRate !== args.rate || wav.channels !== (args.stereo ? 2 : 1)) return { ok: false, why: `format ${wav.channels} × ${wav.sampleRate} Hz` };
  if (frames < sentSamples || frames > sentSamples + wav.sampleRate / 2) return { ok: false, why: `${frames} samples for ${sentSamples} sent` };
  const from = Math.round(0.5 * wav.sampleRate);
  const to = frames - from;
  const amp = (c, hz) => toneAmplitude(channel(c).subarray(from, to), wav.sampleRate, hz);
  const present = AMPLITUDE * 0.8;
  const absent = AMPLITUDE * 0.01;
  const checks = args.stereo
    ? [amp(0, CALLER_HZ) > present, amp(0, AGENT_HZ) < absent, amp(1, AGENT_HZ) > present, amp(1, CALLER_HZ) < absent]
    : [amp(0, CALLER_HZ) > present / 2, amp(0, AGENT_HZ) > present / 2];
  if (checks.every(Boolean)) return { ok: true };
  // Say where: the longest run of silence (|sample| < 100) inside each channel, 10 ms clear of its ends.
  const silences = [];
  for (let c = 0; c < wav.channels; c++) {
    const x = channel(c);
    let run = 0;
    let longest = { from: 0, ms: 0 };
    for (let i = Math.round(wav.sampleRate / 100); i < frames - wav.sampleRate / 100; i++) {
      run = Math.abs(x[i]) < 100 ? run + 1 : 0;
      if (run > longest.ms * (wav.sampleRate / 1000)) longest = { from: (i - run + 1) / wav.sampleRate, ms: run / (wav.sampleRate / 1000) };
    }
    if (longest.ms >= 5) silences.push(`channel ${c} silent ${Math.round(longest.ms)} ms from ${longest.from.toFixed(2)} s`);
  }
  return { ok: false, why: `a tone is missing or in the wrong channel${silences.length ? ` (${silences.join('; ')})` : ''}` };
}

function gatewayEnv(ctx, gatewayPort) {
  return {
    ...ctx.s3,
    PORT: String(gatewayPort),
    HOST: '127.0.0.1',
    DATA_DIR: join(ctx.root, `data-${gatewayPort}`),
    DATABASE_URL: ctx.databaseUrl,
    S3_ENDPOINT: ctx.s3Endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    S3_BUCKET: 'callvault-load',
    MASTER_KEY: MASTER_KEY.toString('base64'),
    TWILIO_ACCOUNTS: `${ORG}:${ACCOUNT_SID}:${AUTH_TOKEN}`,
    API_KEYS: `${ORG}:${API_KEY}`,
    PUBLIC_URL: `http://127.0.0.1:${gatewayPort}`,
    // Egress rooms carry their SID in the URL: the gateway never asks LiveKit about them. Nothing listens here,
    // so a lookup (or any other call to LiveKit) would fail the recording and the run.
    LIVEKIT_URL: `ws://127.0.0.1:${ctx.noLivekitPort}`,
    LIVEKIT_API_KEY: 'APIload',
    LIVEKIT_API_SECRET: randomBytes(24).toString('hex'),
    LIVEKIT_ORG: ORG,
    LIVEKIT_EGRESS_RECONNECT_GRACE_SECONDS: String(EGRESS_GRACE_SECONDS),
    // Two egress sockets per room, all in one LiveKit project.
    MAX_STREAMS_PER_ACCOUNT: String(Math.max(1000, 2 * CALLS + 10)),
    RECORDING_SAMPLE_RATE: String(args.rate),
    RECORDING_DEFAULT: JSON.stringify({ enabled: true, stereo: args.stereo }),
    SPOOL_MIN_FREE_MIB: '0',
    LOG_LEVEL: 'warn',
  };
}

/** One source: the sink, then a fresh gateway process, on the same traffic. */
async function measureSource(source, ctx) {
  const profileDir = (dir) => (args.source.length > 1 ? join(dir, source) : dir);

  // 1. The bare sink.
  const sink = child(process.execPath, ['load/sink.mjs'], {}, 'sink');
  const sinkPort = Number(await waitFor('the sink', async () => /listening (\d+)/.exec(sink.output())?.[1]));
  let bare;
  let sinkMessages;
  let sinkIdle;
  let sinkStart;
  let sinkEnd;
  try {
    log(`${source} sink: ${CALLS} calls × ${SECONDS} s`);
    sinkIdle = await idleCpuPerSecond(sink.proc.pid);
    sinkStart = { cpu: await cpuSplit(sink.proc.pid), at: Date.now() };
    bare = await placeCalls(source, `ws://127.0.0.1:${sinkPort}`, measurer(sink.proc.pid));
    // Every frame taken: the sink's count is the floor's, whatever is still in flight when the last one is sent.
    const expected = source === 'twilio' ? bare.framesSent + 3 * CALLS : bare.framesSent;
    const sinkCount = async () => Number(await (await fetch(`http://127.0.0.1:${sinkPort}/messages`)).text());
    const takenBy = Date.now() + 10_000;
    while ((sinkMessages = await sinkCount()) < expected && Date.now() < takenBy) await sleep(50);
    sinkEnd = { cpu: await cpuSplit(sink.proc.pid), at: Date.now() };
    for (const stream of bare.streams) stream.ws.close();
  } finally {
    await stop(sink);
  }

  // 2. The gateway.
  const gatewayPort = await freePort();
  const cpuProf = args['cpu-prof'] && profileDir(args['cpu-prof']);
  const perf = args.perf && profileDir(args.perf);
  if (cpuProf) await mkdir(cpuProf, { recursive: true });
  if (perf) await mkdir(perf, { recursive: true });
  const nodeArgs = [...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] : []), ...(perf ? ['--perf-basic-prof'] : []), 'dist/main.js'];
  // --perf: the gateway runs under `perf record` (on-CPU samples only, kernel included); its CPU figures are then perf's process.
  const gateway = child(
    perf ? 'perf' : process.execPath,
    perf ? ['record', '-e', 'cpu-clock', '-F', '499', '-g', '-o', join(perf, 'perf.data'), '--', process.execPath, ...nodeArgs] : nodeArgs,
    gatewayEnv(ctx, gatewayPort),
    `${source} gateway`,
  );
  try {
    const base = `http://127.0.0.1:${gatewayPort}`;
    await waitFor('the gateway', async () => (await fetch(`${base}/readyz`)).ok);
    await sleep(1000);
    const idleRss = await rssBytes(gateway.proc.pid);
    const gatewayIdle = await idleCpuPerSecond(gateway.proc.pid);
    log(`${source} gateway: ${CALLS} calls × ${SECONDS} s`);
    // A scrape resets the event-loop delay gauges: the first one after the calls covers exactly their time.
    await (await fetch(`${base}/metrics`)).text();
    const gatewayStart = { cpu: await cpuSplit(gateway.proc.pid), at: Date.now(), written: await writeBytes(gateway.proc.pid) };
    const full = await placeCalls(source, `ws://127.0.0.1:${gatewayPort}`, measurer(gateway.proc.pid));
    const lagText = await (await fetch(`${base}/metrics`)).text();
    const lagMs = (name) => Math.round(Number(new RegExp(`^callvault_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(lagText)?.[1]) * 1000);
    // Every recording finished, whichever way (a failed one must not hang the run until a timeout).
    const finished = await waitFor(
      'every recording to finish',
      async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        return counter(text, 'callvault_recordings_finished_total') >= CALLS ? { text, at: Date.now() } : null;
      },
      120_000,
    );
    const gatewayEnd = { cpu: await cpuSplit(gateway.proc.pid), at: Date.now(), written: await writeBytes(gateway.proc.pid) };
    const text = finished.text;
    const received = counter(text, 'callvault_frames_received_total', { source });
    const dropped = counter(text, 'callvault_frames_dropped_total', { source });
    // Samples the pipeline itself dropped (late, duplicate): none of the driver's traffic should lose any.
    const pipelineDropped = counter(text, 'callvault_frames_dropped_total', { source: 'pipeline' });
    const completed = counter(text, 'callvault_recordings_finished_total', { status: 'completed' });
    const failed = counter(text, 'callvault_recordings_finished_total', { status: /failed|interrupted/ });
    // The gateway closes a Twilio stream once its call is done; the close may land just after the metric moved.
    const closedBy = Date.now() + 10_000;
    while (full.streams.some((s) => s.closeCode === null) && Date.now() < closedBy) await sleep(50);
    const badCloses = full.streams.filter((s) => s.closeCode !== 1000);
    if (badCloses.length > 0) log(`${source} streams not closed with 1000: codes ${[...new Set(badCloses.map((s) => s.closeCode))].join(', ')}`);

    // What was recorded, per call: the row's duration against the audio sent (SECONDS per track), then the audio.
    const db = new pg.Client({ connectionString: ctx.databaseUrl });
    await db.connect();
    let rows;
    try {
      ({ rows } = await db.query(
        `SELECT c.external_id, r.status, r.duration_ms FROM recordings r JOIN calls c ON c.id = r.call_id WHERE c.external_id = ANY($1)`,
        [full.calls.map((c) => c.id)],
      ));
    } finally {
      await db.end();
    }
    const durations = rows.filter((r) => r.status === 'completed').map((r) => Number(r.duration_ms));
    const recordingsShort = rows.filter((r) => r.status === 'completed' && Number(r.duration_ms) < SECONDS * 1000).length;
    const audio = [];
    for (const call of full.calls) audio.push({ id: call.id, ...(await checkAudio(base, call.id).catch((err) => ({ ok: false, why: err.message }))) });
    const audioWrong = audio.filter((a) => !a.ok);
    for (const a of audioWrong.slice(0, 5)) log(`${source} recording of ${a.id}: ${a.why}`);

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
    const ms = (name, q) => Math.round(histogramQuantile(text, name, q) * 1000);
    return {
      sink: { cpuUsPerCallSecond: Math.round(sinkRun.us), steadyWindowCpuUsPerCallSecond: Math.round(perCallSecond(bare.window)), messages: sinkMessages, driverMaxTickGapMs: bare.maxTickGapMs },
      gateway: {
        cpuUsPerCallSecond: Math.round(gatewayRun.us),
        steadyWindowCpuUsPerCallSecond: Math.round(perCallSecond(full.window)),
        systemCpuShare: Number(gatewayRun.systemShare.toFixed(2)),
        ratioToSink: Number((gatewayRun.us / sinkRun.us).toFixed(2)),
        callsPerCore: Math.floor(1e6 / gatewayRun.us),
        diskWriteKiBPerCallSecond: Math.round((gatewayEnd.written - gatewayStart.written) / (CALLS * SECONDS) / 1024),
        rssPerCallKiB: Math.round((full.window.peakRss - idleRss) / CALLS / 1024),
        pipelineLatencyMs: { p50: ms('callvault_pipeline_latency_seconds', 0.5), p99: ms('callvault_pipeline_latency_seconds', 0.99) },
        eventLoopLagMs: { p99: lagMs('p99'), max: lagMs('max') },
        finalisationLatencyMs: { p50: ms('callvault_recording_finalization_seconds', 0.5), p99: ms('callvault_recording_finalization_seconds', 0.99) },
        framesSent: full.framesSent,
        framesLost: full.framesSent - received + dropped,
        pipelineSamplesDropped: pipelineDropped,
        recordingsCompleted: completed,
        recordingsFailed: failed,
        recordingsShort,
        recordingDurationMs: { min: Math.min(...durations), max: Math.max(...durations), sentPerTrack: SECONDS * 1000 },
        audioChecked: audio.length,
        audioWrong: audioWrong.length,
        streamsNotClosedNormally: badCloses.length,
        driverMaxTickGapMs: full.maxTickGapMs,
      },
    };
  } finally {
    await stop(gateway);
  }
}

/** What makes a source's run fail (nothing about timing): lost frames, unfinished, failed, short or wrong recordings, cut streams. */
function faults(r) {
  const g = r.gateway;
  return Object.entries({
    framesLost: g.framesLost !== 0,
    pipelineSamplesDropped: g.pipelineSamplesDropped !== 0,
    recordingsCompleted: g.recordingsCompleted !== CALLS,
    recordingsFailed: g.recordingsFailed !== 0,
    recordingsShort: g.recordingsShort !== 0,
    audioWrong: g.audioWrong !== 0,
    streamsNotClosedNormally: g.streamsNotClosedNormally !== 0,
  })
    .filter(([, bad]) => bad)
    .map(([name]) => `${name} ${g[name]}`);
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), 'callvault-load-'));
  const cleanups = [];
  try {
    // MinIO, as the tests run it.
    const minioBin = await ensurePeer('minio');
    const [minioPort, consolePort, noLivekitPort] = [await freePort(), await freePort(), await freePort()];
    const s3 = { AWS_ACCESS_KEY_ID: `cv${randomBytes(8).toString('hex')}`, AWS_SECRET_ACCESS_KEY: randomBytes(24).toString('hex') };
    await mkdir(join(root, 'minio'));
    const minio = child(minioBin, ['server', join(root, 'minio'), '--address', `127.0.0.1:${minioPort}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'], { MINIO_ROOT_USER: s3.AWS_ACCESS_KEY_ID, MINIO_ROOT_PASSWORD: s3.AWS_SECRET_ACCESS_KEY, MINIO_UPDATE: 'off', MINIO_BROWSER: 'off' }, 'minio');
    cleanups.push(() => stop(minio));
    await waitFor('MinIO', async () => (await fetch(`http://127.0.0.1:${minioPort}/minio/health/ready`)).ok);

    // A fresh database for this run.
    const dbName = `callvault_load_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: args.database });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    cleanups.push(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
    });
    const databaseUrl = new URL(args.database);
    databaseUrl.pathname = `/${dbName}`;

    const ctx = { root, s3, s3Endpoint: `http://127.0.0.1:${minioPort}`, databaseUrl: databaseUrl.toString(), noLivekitPort };
    const sources = {};
    for (const source of args.source) sources[source] = await measureSource(source, ctx);
    const result = { calls: CALLS, seconds: SECONDS, sampleRate: args.rate, stereo: args.stereo, sources };
    if (sources.twilio && sources.livekit) {
      const ratio = (f) => Number((f(sources.livekit) / f(sources.twilio)).toFixed(2));
      // The goal: a LiveKit room recording (two participants at 48 kHz) costs at most twice a Twilio call.
      result.livekitToTwilio = {
        gatewayCpu: ratio((r) => r.gateway.cpuUsPerCallSecond),
        gatewaySteadyWindowCpu: ratio((r) => r.gateway.steadyWindowCpuUsPerCallSecond),
        sinkCpu: ratio((r) => r.sink.cpuUsPerCallSecond),
        rssPerCall: ratio((r) => r.gateway.rssPerCallKiB),
      };
    }
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    for (const [source, r] of Object.entries(sources)) {
      const found = faults(r);
      if (found.length > 0) {
        log(`${source}: ${found.join(', ')}`);
        process.exitCode = 1;
      }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err) => log(`cleanup failed: ${err.message}`));
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`load: ${err.stack ?? err}\n`);
  process.exit(1);
});
