/**
 * The gateway as an operator runs it: `node dist/main.js` as a child process on real PostgreSQL and MinIO,
 * with its JSON log lines collected. One helper for every test that signals or kills a real process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { s3Peer } from './peers.js';

const MAIN = join(import.meta.dirname, '../../dist/main.js');

export interface GatewayProcess {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stderr(): string;
  exited: Promise<number | null>;
  /** Resolves with the port once the gateway logs that it listens. */
  listening(timeoutMs?: number): Promise<number>;
  /** The log lines with this message. */
  find(msg: string): Record<string, unknown>[];
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

/** Environment for a gateway on the shared MinIO, one database and one bucket; `extra` overrides. */
export function gatewayEnv(opts: { dataDir: string; databaseUrl: string; bucket: string; publicUrl: string }, extra: Record<string, string>): Record<string, string> {
  const peer = s3Peer();
  return {
    PATH: process.env['PATH'] ?? '',
    HOST: '127.0.0.1',
    PORT: '0',
    PUBLIC_URL: opts.publicUrl,
    DATA_DIR: opts.dataDir,
    DATABASE_URL: opts.databaseUrl,
    S3_ENDPOINT: peer.endpoint,
    S3_REGION: peer.region,
    S3_BUCKET: opts.bucket,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: peer.accessKeyId,
    AWS_SECRET_ACCESS_KEY: peer.secretAccessKey,
    WORKER_THREADS: '1',
    LOG_LEVEL: 'info',
    ...extra,
  };
}

export function startGatewayProcess(env: Record<string, string>): GatewayProcess {
  const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines: Record<string, unknown>[] = [];
  let partial = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const line of complete) if (line.trim().startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const find = (msg: string) => lines.filter((l) => l['msg'] === msg);
  return {
    child,
    lines,
    exited,
    stderr: () => stderr,
    find,
    async listening(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const port = find('gateway listening')[0]?.['port'];
        if (typeof port === 'number') return port;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the gateway did not start: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
