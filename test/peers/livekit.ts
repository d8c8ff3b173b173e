/**
 * A real LiveKit server (livekit-server v1.13.5, built once by scripts/peers.mjs) on free loopback ports,
 * plus a webhook relay: LiveKit's webhook URLs are fixed in its config before any gateway exists, so it
 * posts to the relay, which forwards each event (body and signature untouched) to the gateway a test
 * registered for the event's room-name prefix.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePeer } from '../../scripts/peers.mjs';
import { freePorts } from './ports.js';

const READY_DEADLINE_MS = 60_000;
const STOP_DEADLINE_MS = 10_000;

export interface LivekitServerPeer {
  /** ws:// URL clients connect to. */
  url: string;
  apiKey: string;
  apiSecret: string;
  /** POST `{ "prefix": "room-prefix", "url": "http://gateway/livekit/webhook" }` to `${relay}/targets`. */
  webhookRelayUrl: string;
  stop(): Promise<void>;
}


function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Forwards LiveKit webhooks to the gateway registered for the room's name prefix (longest prefix wins). */
function startWebhookRelay(port: number): Promise<Server> {
  const targets = new Map<string, string>();
  const server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      if (req.url === '/targets' && req.method === 'POST') {
        const { prefix, url } = JSON.parse(body) as { prefix: string; url: string };
        targets.set(prefix, url);
        res.writeHead(204).end();
        return;
      }
      if (req.url?.startsWith('/targets?') && req.method === 'DELETE') {
        targets.delete(new URLSearchParams(req.url.slice('/targets?'.length)).get('prefix') ?? '');
        res.writeHead(204).end();
        return;
      }
      let room = '';
      try {
        room = (JSON.parse(body) as { room?: { name?: string } }).room?.name ?? '';
      } catch {
        // not an event; nobody to forward it to
      }
      const prefix = [...targets.keys()].filter((p) => room.startsWith(p)).sort((a, b) => b.length - a.length)[0];
      if (prefix === undefined) {
        res.writeHead(200).end();
        return;
      }
      const forwarded = await fetch(targets.get(prefix) as string, {
        method: 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/webhook+json', authorization: req.headers.authorization ?? '' },
        body,
      }).catch(() => null);
      res.writeHead(forwarded?.status ?? 502).end(forwarded ? await forwarded.text() : '');
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
  await exited;
  clearTimeout(timer);
}

export async function startLivekitServer(): Promise<LivekitServerPeer> {
  const binary = await ensurePeer('livekit');
  const root = await mkdtemp(join(tmpdir(), 'callvault-livekit-'));
  const [httpPort, tcpPort, udpPort, relayPort] = (await freePorts(4)) as [number, number, number, number];
  const apiKey = `APIcv${randomBytes(6).toString('hex')}`;
  const apiSecret = randomBytes(32).toString('base64url');
  const relay = await startWebhookRelay(relayPort);
  const webhookRelayUrl = `http://127.0.0.1:${relayPort}`;
  const config = [
    `port: ${httpPort}`,
    'bind_addresses: ["127.0.0.1"]',
    'rtc:',
    `  tcp_port: ${tcpPort}`,
    `  udp_port: ${udpPort}`,
    '  node_ip: 127.0.0.1',
    '  use_external_ip: false',
    'room:',
    '  empty_timeout: 10',
    '  departure_timeout: 1',
    '  enable_remote_unmute: true',
    'keys:',
    `  ${apiKey}: ${apiSecret}`,
    'webhook:',
    `  api_key: ${apiKey}`,
    '  urls:',
    `    - ${webhookRelayUrl}/`,
    'logging:',
    '  level: info',
  ].join('\n');
  const configPath = join(root, 'livekit.yaml');
  await writeFile(configPath, config, { mode: 0o600 });
  const logPath = join(root, 'livekit.log');
  const log = createWriteStream(logPath);
  const child = spawn(binary, ['--dev', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    await stopChild(child);
    await new Promise<void>((resolve) => relay.close(() => resolve()));
    await new Promise<void>((resolve) => log.end(() => resolve()));
    await rm(root, { recursive: true, force: true });
  };

  const deadline = Date.now() + READY_DEADLINE_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-30).join('\n');
      await stop();
      throw new Error(`livekit-server exited during start-up:\n${tail}`);
    }
    const ok = await fetch(`http://127.0.0.1:${httpPort}/`, { signal: AbortSignal.timeout(1_000) })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`livekit-server not ready within ${READY_DEADLINE_MS} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url: `ws://127.0.0.1:${httpPort}`, apiKey, apiSecret, webhookRelayUrl, stop };
}
