/**
 * The load driver (load/driver.mjs), run short as CI runs it: a few calls for a few seconds per kind of traffic
 * against its real sink and a real gateway (its own MinIO, a fresh database on the test PostgreSQL). It fails
 * on lost frames, failed or short recordings, and wrong audio (every recording's WAV fetched through the API:
 * its length, and the caller's and the agent's tone each in its own channel) — never on a timing.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { postgresAdminUrl } from '../support/peers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CALLS = 6;
const SECONDS = 3;
/** 20 ms frames, two tracks per call (one Twilio socket carrying both, or two LiveKit egress sockets). */
const FRAMES = CALLS * 2 * ((SECONDS * 1000) / 20);

interface SourceResult {
  sink: { cpuUsPerCallSecond: number; messages: number };
  gateway: {
    cpuUsPerCallSecond: number;
    framesSent: number;
    framesLost: number;
    pipelineSamplesDropped: number;
    recordingsCompleted: number;
    recordingsFailed: number;
    recordingsShort: number;
    recordingDurationMs: { min: number; max: number; sentPerTrack: number };
    audioChecked: number;
    audioWrong: number;
    streamsNotClosedNormally: number;
  };
}

interface DriverResult {
  calls: number;
  seconds: number;
  sources: Partial<Record<'twilio' | 'livekit', SourceResult>>;
  livekitToTwilio?: { gatewayCpu: number; gatewaySteadyWindowCpu: number; sinkCpu: number; rssPerCall: number };
}

function runDriver(source: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['load/driver.mjs', '--calls', String(CALLS), '--seconds', String(SECONDS), '--ramp-seconds', '1', '--source', source, '--database', postgresAdminUrl()],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function expectWhole(result: SourceResult | undefined, sinkMessagesPerCall: number): void {
  expect(result).toBeDefined();
  const { sink, gateway } = result!;
  expect(gateway.framesSent).toBe(FRAMES);
  expect(gateway.framesLost).toBe(0);
  expect(gateway.pipelineSamplesDropped).toBe(0);
  expect(gateway.recordingsCompleted).toBe(CALLS);
  expect(gateway.recordingsFailed).toBe(0);
  expect(gateway.recordingsShort).toBe(0);
  expect(gateway.recordingDurationMs.min).toBeGreaterThanOrEqual(SECONDS * 1000);
  expect(gateway.audioChecked).toBe(CALLS);
  expect(gateway.audioWrong).toBe(0);
  expect(gateway.streamsNotClosedNormally).toBe(0);
  // The sink took the same traffic: every frame (and, for Twilio, each call's connected, start and stop).
  expect(sink.messages).toBe(FRAMES + CALLS * sinkMessagesPerCall);
  expect(gateway.cpuUsPerCallSecond).toBeGreaterThan(0);
}

const EXTRA_MESSAGES = { twilio: 3, livekit: 0 } as const;

describe('npm run load (load/driver.mjs), short', () => {
  test.each([{ source: 'twilio' as const }, { source: 'livekit' as const }])(
    '$source: every frame recorded, every recording complete with its audio in place',
    async ({ source }) => {
      const run = await runDriver(source);
      expect(run.code, `${run.stderr}\n${run.stdout}`).toBe(0);
      const result = JSON.parse(run.stdout) as DriverResult;
      expect(result).toMatchObject({ calls: CALLS, seconds: SECONDS });
      expect(Object.keys(result.sources)).toEqual([source]);
      expectWhole(result.sources[source], EXTRA_MESSAGES[source]);
      expect(result.livekitToTwilio).toBeUndefined();
    },
    240_000,
  );

  test('twilio,livekit: both against the same build in one run, and the LiveKit/Twilio cost ratio', async () => {
    const run = await runDriver('twilio,livekit');
    expect(run.code, `${run.stderr}\n${run.stdout}`).toBe(0);
    const result = JSON.parse(run.stdout) as DriverResult;
    expect(Object.keys(result.sources)).toEqual(['twilio', 'livekit']);
    expectWhole(result.sources.twilio, EXTRA_MESSAGES.twilio);
    expectWhole(result.sources.livekit, EXTRA_MESSAGES.livekit);
    const { twilio, livekit } = result.sources as Required<DriverResult['sources']>;
    expect(result.livekitToTwilio?.gatewayCpu).toBeCloseTo(livekit.gateway.cpuUsPerCallSecond / twilio.gateway.cpuUsPerCallSecond, 1);
  }, 360_000);

  test('refuses an unknown source before starting anything', async () => {
    const run = await runDriver('twilio,sip');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--source');
    expect(run.stdout).toBe('');
  });
});
