/**
 * The gateway as an operator runs it: `node dist/main.js` as a child process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { simulateTwilioCall } from '../../dist/ingest/twilio/index.js';

const MAIN = join(import.meta.dirname, '../../dist/main.js');

interface Exited {
  code: number | null;
  stderr: string;
  stdout: string;
}

function run(env: Record<string, string>): Promise<Exited> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env['PATH'] ?? '', ...env } });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr, stdout }));
  });
}

describe('start-up refusals', () => {
  test.each([
    ['PORT', 'not-a-port'],
    ['MASTER_KEY', 'c2hvcnQ='],
    ['RECORDING_SAMPLE_RATE', '44100'],
    ['RECORDING_DEFAULT', '{"enabled": "yes"}'],
    ['TWILIO_ACCOUNTS', 'acme:not-a-sid:token'],
    ['SIGNALWIRE_PROJECTS', 'acme:not-a-project-id:PTsecrettoken:example.signalwire.com'],
    ['S3_FORCE_PATH_STYLE', 'maybe'],
    ['PREVIOUS_MASTER_KEYS', 'mk-old:c2hvcnQ='],
    ['PREVIOUS_MASTER_KEYS', 'bad id!:' + Buffer.alloc(32, 7).toString('base64')],
    ['PUBLIC_URL', 'ftp://rec.example.com'],
    ['SIGNED_URL_MAX_LIFETIME_SECONDS', '5'],
    ['TWILIO_STREAM_TOKEN_REQUIRED', 'Not An Org'],
    ['GATEWAY_ID', 'not/a gateway id'],
    ['INTERNAL_URL', 'ftp://peer.internal:8080'],
  ])('a bad %s stops start-up with a message naming it, without echoing the value', async (name, value) => {
    const result = await run({ [name]: value, DATA_DIR: '/nonexistent/never-created' });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain(name);
    expect(result.stderr).not.toContain(value);
  });

  test.each([
    ['LIVEKIT_API_SECRET', { LIVEKIT_URL: 'ws://127.0.0.1:7880', LIVEKIT_API_KEY: 'devkey', LIVEKIT_ORG: 'acme' }],
    ['LIVEKIT_ORG', { LIVEKIT_URL: 'ws://127.0.0.1:7880', LIVEKIT_API_KEY: 'devkey', LIVEKIT_API_SECRET: 'secret-value-xyz', API_KEYS: 'acme:0123456789abcdef0123' }],
    ['GATEWAY_DEAD_AFTER_SECONDS', { HEARTBEAT_INTERVAL_SECONDS: '5', GATEWAY_DEAD_AFTER_SECONDS: '6' }],
  ])('variables that go together are checked together before anything starts: %s', async (name, env) => {
    const result = await run({ ...env, DATA_DIR: '/nonexistent/never-created' });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain(name);
    expect(result.stderr).not.toContain('secret-value-xyz');
  });

  test('refuses to start on the pure-JS uWebSockets.js fallback', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'callvault-fallback-'));
    try {
      const result = await run({ UWS_USE_FALLBACK: 'true', DATA_DIR: dataDir });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/CONFIG_INVALID.*uWebSockets\.js native binary did not load/);
      // Refused before anything was started or written.
      await expect(stat(join(dataDir, 'postgres'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('npm start with no configuration', () => {
  test('runs on embedded PostgreSQL and S3, prints development credentials, records a call, and exits 0 on SIGTERM', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'callvault-embedded-'));
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env['PATH'] ?? '', DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info' },
    });
    try {
      let stderr = '';
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      const banner = await new Promise<string>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (/Twilio AuthToken\s+\S+/.test(stderr)) resolve(stderr);
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });
      const port = Number(/http:\/\/localhost:(\d+)/.exec(banner)?.[1]);
      const accountSid = /Twilio AccountSid\s+(\S+)/.exec(banner)?.[1] ?? '';
      const authToken = /Twilio AuthToken\s+(\S+)/.exec(banner)?.[1] ?? '';
      expect(port).toBeGreaterThan(0);
      expect(stdout).toContain('embedded storage is for development only');
      expect((await stat(join(dataDir, 'master.key'))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dataDir, 'dev-credentials.json'))).mode & 0o777).toBe(0o600);
      // The printed credentials are never in the structured log.
      expect(stdout).not.toContain(authToken);

      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(200);
      const result = await simulateTwilioCall({
        url: `ws://localhost:${port}/twilio/media`,
        accountSid,
        authToken,
        durationMs: 1000,
      });
      expect(result.closeCode).toBe(1000);
      const logLines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logLines.find((l) => l['msg'] === 'recording completed')).toMatchObject({ durationMs: 1000 });

      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
