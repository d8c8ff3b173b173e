/**
 * `callvault view` against a real gateway (uWS, workers, PostgreSQL, MinIO) with two recorded Twilio calls, the
 * newer one with a transcript and a function call posted by the bot. The non-interactive modes run the real
 * bin/callvault.js as a child process; the interactive mode runs it in a real terminal (tmux: new-session,
 * send-keys, capture-pane), with CALLVAULT_PLAYER a script that keeps the file it was given, whose audio is
 * then checked: the caller's tone on the caller track, the bot's on the bot track, both apart in stereo.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { toneAmplitude } from '../support/audio.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { AGENT_HZ, CALLER_HZ, TONE_AMPLITUDE, apiKeyOf, decodeWav, placeCall, until, window } from '../api/support.js';

const exec = promisify(execFile);
const BIN = resolve('bin/callvault.js');
const TMUX = '/usr/bin/tmux';
const EXPECTED = TONE_AMPLITUDE * 32767;

let t: TestGateway;
let dir: string;
let older: string;
let newer: string;

async function post(path: string, body: unknown): Promise<void> {
  const res = await fetch(`${t.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKeyOf(t, 'acme')}` },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
}

async function completed(callSid: string): Promise<void> {
  await until(async () => (await t.gateway.db.recordings.list('acme', { callSid, status: 'completed', page: 0, limit: 1 })).rows[0], `the recording of ${callSid}`);
}

beforeAll(async () => {
  t = await startTestGateway();
  dir = await mkdtemp(join(tmpdir(), 'callvault-view-test-'));
  older = (await placeCall(t, { durationMs: 1000 })).callSid;
  await completed(older);
  // The newer call: 2 s, caller 440 Hz and bot 1000 Hz (placeCall's defaults), stereo (the test gateway's default).
  newer = (await placeCall(t, { durationMs: 2000, customParameters: { conversationId: 'conv-view-1' } })).callSid;
  await completed(newer);
  await post(`/calls/${newer}/transcript`, {
    entries: [
      { timestamp: '2026-12-01T14:30:22.123456Z', channel: 'caller', type: 'input', text: 'I lost my card', confidence: 0.93, duration_ms: 800 },
      { timestamp: '2026-12-01T14:30:23.500000Z', channel: 'bot', type: 'output', text: 'Let me look that up', confidence: null, duration_ms: 900 },
    ],
  });
  await post(`/calls/${newer}/events`, {
    events: [
      {
        type: 'function_call',
        timestamp: '2026-12-01T14:30:24.000100Z',
        function_name: 'lookup_card',
        arguments: { last4: '4242' },
        result: { status: 'blocked' },
        call_id: 'fc_1',
      },
    ],
  });
}, 60_000);

afterAll(async () => {
  await t?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}) {
  return exec(process.execPath, [BIN, 'view', ...args], {
    env: { PATH: process.env['PATH'] ?? '', CALLVAULT_URL: t.httpUrl, CALLVAULT_API_KEY: apiKeyOf(t, 'acme'), ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

const TRANSCRIPT_TEXT = (callSid: string) =>
  [
    `Transcript of call ${callSid} (conversation conv-view-1)`,
    '[2026-12-01T14:30:22.123456Z] caller: I lost my card',
    '[2026-12-01T14:30:23.500000Z] bot: Let me look that up',
    '',
  ].join('\n');

describe('non-interactive', () => {
  test('--list: recent calls, newest first, with duration, status and source', async () => {
    const { code, stdout } = await cli(['--list']);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^#\s+CALL\s+STARTED\s+DURATION\s+STATUS\s+SOURCE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/))).toEqual([
      ['1', newer, expect.stringMatching(/^\d{4}-\d\d-\d\dT/), '2.0', 's', 'completed', 'gateway'],
      ['2', older, expect.stringMatching(/^\d{4}-\d\d-\d\dT/), '1.0', 's', 'completed', 'gateway'],
    ]);
    const limited = await cli(['--list', '--limit', '1']);
    expect(limited.stdout.trim().split('\n')).toHaveLength(2);
  });

  test.each([
    ['--latest', () => ['--latest'], () => newer],
    ['--summary', () => ['--summary', newer], () => newer],
  ])('%s prints the call’s summary', async (_mode, args, callSid) => {
    const { code, stdout } = await cli(args());
    expect(code).toBe(0);
    const fields = Object.fromEntries(stdout.trim().split('\n').map((l) => [l.slice(0, 16).trim(), l.slice(16)]));
    expect(fields).toMatchObject({
      Call: callSid(),
      Conversation: 'conv-view-1',
      Source: 'twilio',
      Duration: '2.0 s',
      'Call time': expect.stringMatching(/^\d+\.\d s$/),
      Recording: expect.stringMatching(/^CR[0-9a-f]{32} completed, stereo, 16000 Hz, server key, 2\.0 s$/),
      Transcript: '2 entries',
      'Function calls': '1: lookup_card',
      Speech: expect.stringMatching(/^caller \d\.\d s, bot \d\.\d s \(energy/),
    });
  });

  test('--summary of the older call: no transcript, no function calls', async () => {
    const { stdout } = await cli(['--summary', older]);
    expect(stdout).toContain(`Call            ${older}`);
    expect(stdout).toContain('Transcript      0 entries');
    expect(stdout).toContain('Function calls  0');
  });

  test('--export <file> <callId> writes the transcript as text', async () => {
    const file = join(dir, 'exported.txt');
    const { code, stderr } = await cli(['--export', file, newer]);
    expect(code).toBe(0);
    expect(stderr).toContain(`wrote the transcript of ${newer} to ${file}`);
    expect(await readFile(file, 'utf8')).toBe(TRANSCRIPT_TEXT(newer));
  });

  test.each([
    ['no API key', ['--list'], { CALLVAULT_API_KEY: '' }, 64, '--api-key (or CALLVAULT_API_KEY) is required'],
    ['no URL', ['--list'], { CALLVAULT_URL: '' }, 64, '--url (or CALLVAULT_URL)'],
    ['a URL that is not http', ['--list', '--url', 'ftp://x'], {}, 64, '--url (or CALLVAULT_URL)'],
    ['two modes', ['--list', '--latest'], {}, 64, 'at most one of'],
    ['--export without a call id', ['--export', 'x.txt'], {}, 64, '--export takes <file> <callId>'],
    ['a bad limit', ['--list', '--limit', '0'], {}, 64, 'limit'],
    ['an unknown option', ['--lst'], {}, 64, "Unknown option '--lst'"],
    ['an unknown call', ['--summary', `CA${'0'.repeat(32)}`], {}, 1, 'NOT_FOUND'],
    ['a wrong key', ['--list'], { CALLVAULT_API_KEY: 'not-a-key-of-anyone' }, 1, 'UNAUTHORIZED'],
  ])('%s: exit status and message', async (_what, args, env, status, message) => {
    const { code, stderr } = await cli(args, env);
    expect(code).toBe(status);
    expect(stderr).toContain(message);
  });

  test('a read-only key is enough', async () => {
    const readOnly = (await t.gateway.db.apiKeys.create('acme', { scopes: ['read'] })).key;
    const { code, stdout } = await cli(['--latest'], { CALLVAULT_API_KEY: readOnly });
    expect(code).toBe(0);
    expect(stdout).toContain(`Call            ${newer}`);
  });

  test('another organisation’s key sees none of these calls', async () => {
    const globex = { CALLVAULT_API_KEY: apiKeyOf(t, 'globex') };
    expect((await cli(['--list'], globex)).stdout.trim()).toBe('no calls');
    const summary = await cli(['--summary', newer], globex);
    expect(summary.code).toBe(1);
    expect(summary.stderr).toContain('NOT_FOUND');
  });
});

describe('interactive, answers piped in', () => {
  /** Runs `view` with `input` on stdin and PATH holding only `bin`. */
  function piped(input: string, bin: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string }> {
    return new Promise((done, fail) => {
      const child = execFile(
        process.execPath,
        [BIN, 'view'],
        { cwd: dir, env: { PATH: bin, CALLVAULT_URL: t.httpUrl, CALLVAULT_API_KEY: apiKeyOf(t, 'acme'), ...env } },
        (err, stdout) => {
          if (err && typeof err.code !== 'number') fail(err);
          else done({ code: typeof err?.code === 'number' ? err.code : 0, stdout });
        },
      );
      child.stdin!.end(input);
    });
  }

  /** A directory of fake players: each notes its name and keeps a copy of the file it got. */
  async function players(names: readonly string[]): Promise<{ bin: string; log: string; copy: string }> {
    const bin = await mkdtemp(join(dir, 'bin-'));
    const log = join(bin, 'played.log');
    const copy = join(bin, 'played.wav');
    for (const name of names) {
      await writeFile(join(bin, name), `#!/bin/sh\necho ${name} >> '${log}'\n/bin/cp "$1" '${copy}'\n`);
      await chmod(join(bin, name), 0o755);
    }
    return { bin, log, copy };
  }

  test.each([
    [['aplay', 'paplay', 'xdg-open'], 'aplay'],
    [['paplay', 'play', 'afplay'], 'paplay'],
    [['play', 'xdg-open'], 'play'],
    [['afplay', 'xdg-open'], 'afplay'],
    [['xdg-open'], 'xdg-open'],
  ] as const)('with %j on PATH, the bot track plays with %s', async (names, chosen) => {
    const { bin, log, copy } = await players(names);
    const { code, stdout } = await piped('1\n5\nq\n', bin);
    expect(code).toBe(0);
    expect(stdout).toContain('played bot audio');
    expect((await readFile(log, 'utf8')).trim()).toBe(chosen);
    const bot = decodeWav(new Uint8Array(await readFile(copy)));
    expect(bot.channels).toBe(1);
    expect(toneAmplitude(window(bot.channelSamples[0]!, 16000, 200, 1800), 16000, AGENT_HZ)).toBeGreaterThan(EXPECTED * 0.9);
  });

  test('no player on PATH: says so and carries on; a mono call’s track is an error shown in the menu; end of input ends it', async () => {
    const { bin } = await players([]);
    const { code, stdout } = await piped('1\n4\n1\n', bin);
    expect(code).toBe(0);
    expect(stdout).toContain('no audio player found (tried aplay, paplay, play, afplay, xdg-open, start); set CALLVAULT_PLAYER');
    // After the message the menu came back and the summary was shown.
    expect(stdout.indexOf('Function calls  1: lookup_card')).toBeGreaterThan(stdout.indexOf('no audio player found'));
    const mono = (await placeCall(t, { durationMs: 500, recording: { enabled: true, stereo: false } })).callSid;
    await completed(mono);
    const withPlayer = await players(['aplay']);
    const refused = await piped('1\n4\n3\nq\n', withPlayer.bin);
    expect(refused.code).toBe(0);
    expect(refused.stdout).toContain(`Call ${mono}`);
    expect(refused.stdout).toContain('error: TRACKS_NOT_SEPARATE');
    expect(refused.stdout).toContain('(no function calls)');
  });
});

describe('interactive, in a terminal (tmux)', () => {
  const socket = `callvault-view-${randomBytes(4).toString('hex')}`;
  const tmux = (...args: string[]) => exec(TMUX, ['-L', socket, '-f', '/dev/null', ...args]);
  /** The whole pane, scrollback included. */
  const screen = async () => (await tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'view')).stdout;
  const keys = async (text: string) => {
    if (text) await tmux('send-keys', '-t', 'view', '-l', text);
    await tmux('send-keys', '-t', 'view', 'Enter');
  };
  /** Waits until `text` has appeared `times` times on the screen. */
  const shows = (text: string, times = 1) => expect.poll(async () => (await screen()).split(text).length - 1, { timeout: 15_000 }).toBeGreaterThanOrEqual(times);

  afterAll(async () => {
    await tmux('kill-server').catch(() => undefined);
  });

  test('pick a call; summary, transcript, function calls; play the caller, bot and stereo audio; export; bundle; quit', async () => {
    const played = join(dir, 'played');
    const player = join(dir, 'player.sh');
    // The "player": keeps a copy of each file it is given, numbered in order, and says which it was given.
    const given = join(dir, 'given.log');
    await writeFile(player, `#!/bin/sh\nmkdir -p '${played}'\nn=$(ls '${played}' | wc -l)\ncp "$1" '${played}'/$n.wav\necho "$1" >> '${given}'\n`);
    await chmod(player, 0o755);
    const command = `${process.execPath} ${BIN} view; echo "[view exited $?]"; sleep 600`;
    await tmux(
      'new-session', '-d', '-s', 'view', '-x', '220', '-y', '50', '-c', dir,
      '-e', `CALLVAULT_URL=${t.httpUrl}`, '-e', `CALLVAULT_API_KEY=${apiKeyOf(t, 'acme')}`, '-e', `CALLVAULT_PLAYER=${player}`,
      command,
    );
    await shows('Choose a call [1-');
    const listing = await screen();
    expect(listing.indexOf(newer)).toBeLessThan(listing.indexOf(older));

    // By its id (a number picks by position, as the piped tests do).
    await keys(newer);
    await shows(`Call ${newer}`);
    await shows('Choice: ');
    await keys('1');
    await shows('Function calls  1: lookup_card');
    expect(await screen()).toContain('Transcript      2 entries');

    await keys('2');
    await shows('[2026-12-01T14:30:23.500000Z] bot: Let me look that up');
    expect(await screen()).toContain('[2026-12-01T14:30:22.123456Z] caller: I lost my card');

    await keys('3');
    await shows('[2026-12-01T14:30:24.000100Z] lookup_card({"last4":"4242"}) -> {"status":"blocked"} [fc_1]');

    // The audio, as the player got it.
    await keys('4');
    await shows('played caller audio');
    await keys('5');
    await shows('played bot audio');
    await keys('6');
    await shows('played stereo audio');
    expect((await readdir(played)).sort()).toEqual(['0.wav', '1.wav', '2.wav']);
    const wav = async (n: number) => decodeWav(new Uint8Array(await readFile(join(played, `${n}.wav`))));
    const tone = (samples: Int16Array, hz: number) => toneAmplitude(window(samples, 16000, 200, 1800), 16000, hz);
    const caller = await wav(0);
    expect(caller).toMatchObject({ sampleRate: 16000, channels: 1 });
    expect(tone(caller.channelSamples[0]!, CALLER_HZ)).toBeGreaterThan(EXPECTED * 0.9);
    expect(tone(caller.channelSamples[0]!, AGENT_HZ)).toBeLessThan(EXPECTED * 0.01);
    const bot = await wav(1);
    expect(bot).toMatchObject({ sampleRate: 16000, channels: 1 });
    expect(tone(bot.channelSamples[0]!, AGENT_HZ)).toBeGreaterThan(EXPECTED * 0.9);
    expect(tone(bot.channelSamples[0]!, CALLER_HZ)).toBeLessThan(EXPECTED * 0.01);
    const stereo = await wav(2);
    expect(stereo).toMatchObject({ sampleRate: 16000, channels: 2 });
    expect(tone(stereo.channelSamples[0]!, CALLER_HZ)).toBeGreaterThan(EXPECTED * 0.9);
    expect(tone(stereo.channelSamples[1]!, AGENT_HZ)).toBeGreaterThan(EXPECTED * 0.9);
    expect(tone(stereo.channelSamples[0]!, AGENT_HZ)).toBeLessThan(EXPECTED * 0.01);

    // Export, to a name given at the prompt; then the bundle, to the suggested name (in the terminal's directory).
    await keys('7');
    await shows(`Export the transcript to [${newer}-transcript.txt]: `);
    await keys('from-terminal.txt');
    await shows(`exported the transcript to ${join(dir, 'from-terminal.txt')}`);
    expect(await readFile(join(dir, 'from-terminal.txt'), 'utf8')).toBe(TRANSCRIPT_TEXT(newer));

    await keys('8');
    await shows(`Save the bundle to [${newer}-bundle.zip]: `);
    await keys('');
    const bundle = join(dir, `${newer}-bundle.zip`);
    await shows(`saved the bundle to ${bundle}`);
    await exec('unzip', ['-tq', bundle]);
    const { stdout } = await exec('python3', ['-c', 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', bundle]);
    expect(stdout.trim().split('\n').map((n) => n.split('/')[1])).toEqual([
      'caller_audio.wav',
      'bot_audio.wav',
      'final_stereo_recording.wav',
      'transcript.json',
      'call_metadata.json',
      'session_events.json',
    ]);

    // Another call, then quit.
    await keys('9');
    await shows('Choose a call [1-', 2);
    await keys(older);
    await shows(`Call ${older}`);
    await keys('2');
    await shows('(no transcript entries)');
    await keys('q');
    await shows('[view exited 0]');
    // The downloads the player was given were temporary: gone once the viewer exited.
    const paths = (await readFile(given, 'utf8')).trim().split('\n');
    expect(paths).toHaveLength(3);
    for (const path of paths) await expect(readFile(path)).rejects.toMatchObject({ code: 'ENOENT' });
  }, 90_000);
});
