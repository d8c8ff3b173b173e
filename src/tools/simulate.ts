#!/usr/bin/env node
/**
 * Places a synthetic Twilio Media Streams call against a running gateway (or, with --signalwire, a SignalWire one).
 *   npm run simulate -- --duration 5 --inbound-tone 440 --outbound-tone 1000
 * The call SID is the last line on stdout (and the only thing there); progress goes to stderr.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EnvFields } from '../config/index.js';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';
import {
  SIMULATED_FRAME_MS,
  readWavPcm16Mono8k,
  simulateTwilioCall,
  type SimulatedAudio,
  type SimulatedGap,
  type SimulateTwilioCallOptions,
} from '../ingest/twilio/simulator.js';
import { TWILIO_SAMPLE_RATE, type TwilioTrack } from '../ingest/twilio/protocol.js';

const USAGE = `Usage: npm run simulate -- [options]

  --signalwire               a SignalWire stream: UUID SIDs, X-SignalWire-Signature, /signalwire/media
  --url <ws-url>             gateway stream endpoint (default ws://127.0.0.1:$PORT/twilio/media,
                             or /signalwire/media with --signalwire)
  --signed-url <url>         URL to sign when the gateway's PUBLIC_URL differs from --url
  --account-sid <AC…>        default: first account in TWILIO_ACCOUNTS
  --auth-token <token>       default: first account in TWILIO_ACCOUNTS
  --project-id <uuid>        with --signalwire (same as --account-sid); default: first of SIGNALWIRE_PROJECTS
  --token <token>            with --signalwire (same as --auth-token); default: first of SIGNALWIRE_PROJECTS
  --call-sid <CA…|uuid>      default: random
  --stream-sid <MZ…|uuid>    default: random
  --connect                  <Connect><Stream>: inbound track only (default: both tracks)
  --encoding <mulaw|alaw>    G.711 law of the media: mulaw (audio/x-mulaw, default) or alaw (audio/x-alaw, PCMA)
  --duration <seconds>       call length (default 5, or the longest WAV)
  --inbound-tone <hz>        tone on the inbound track (default 440)
  --outbound-tone <hz>       tone on the outbound track (default 1000)
  --amplitude <0..1>         tone amplitude as a fraction of full scale (default 0.5)
  --inbound-wav <file>       PCM16 mono 8 kHz WAV instead of a tone
  --outbound-wav <file>      PCM16 mono 8 kHz WAV instead of a tone
  --realtime                 pace frames every 20 ms (default: as fast as possible)
  --max-ahead <ms>           when not realtime, stay at most this far ahead of the clock
  --recording <json>         recording options, e.g. '{"enabled":true,"stereo":true}'
  --param <k=v>              custom parameter (repeatable)
  --gap <track:startMs:ms>   drop frames, e.g. inbound:2000:500 (repeatable, multiples of 20 ms)
  --dtmf <atMs:digit>        send a DTMF event (repeatable)
  --mark <atMs:name>         send a mark event (repeatable)
  --close-timeout <ms>       wait this long for the gateway to close after stop (default 10000)
  --help
`;

function usageError(message: string): never {
  throw new CallvaultError(ErrorCode.BadRequest, message);
}

function number(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) usageError(`${flag} expects a number, got "${value}"`);
  return n;
}

function splitOnce(value: string, flag: string, separator: string): [string, string] {
  const i = value.indexOf(separator);
  if (i <= 0) usageError(`${flag} expects a value like a${separator}b, got "${value}"`);
  return [value.slice(0, i), value.slice(i + 1)];
}

function timedEvent(value: string, flag: string): { atMs: number; value: string } {
  const [at, rest] = splitOnce(value, flag, ':');
  const atMs = number(at, flag)!;
  if (!Number.isInteger(atMs) || atMs < 0) usageError(`${flag}: the time must be whole milliseconds, got "${at}"`);
  return { atMs, value: rest };
}

function gap(value: string): SimulatedGap {
  const parts = value.split(':');
  const [track, start, length] = parts;
  if (parts.length !== 3 || (track !== 'inbound' && track !== 'outbound')) {
    usageError(`--gap expects track:startMs:durationMs with track inbound or outbound, got "${value}"`);
  }
  return { track: track as TwilioTrack, startMs: number(start, '--gap')!, durationMs: number(length, '--gap')! };
}

function defaultAccount(signalwire: boolean): { accountSid?: string; authToken?: string } {
  if (signalwire) {
    const projects = process.env['SIGNALWIRE_PROJECTS'];
    if (!projects) return {};
    const parsed = EnvFields.shape.SIGNALWIRE_PROJECTS.safeParse(projects);
    const first = parsed.success ? parsed.data?.[0] : undefined;
    return first ? { accountSid: first.projectId, authToken: first.token } : {};
  }
  const raw = process.env['TWILIO_ACCOUNTS'];
  if (!raw) return {};
  const parsed = EnvFields.shape.TWILIO_ACCOUNTS.safeParse(raw);
  const first = parsed.success ? parsed.data?.[0] : undefined;
  return first ? { accountSid: first.accountSid, authToken: first.authToken } : {};
}

function trackAudio(wav: string | undefined, tone: string | undefined, defaultHz: number, amplitude: number, flag: string): {
  audio: SimulatedAudio;
  lengthMs: number;
} {
  if (wav !== undefined) {
    if (tone !== undefined) usageError(`give either ${flag}-wav or ${flag}-tone, not both`);
    let file: Buffer;
    try {
      file = readFileSync(wav);
    } catch (cause) {
      throw new CallvaultError(ErrorCode.BadRequest, `${wav}: cannot read the file`, { cause });
    }
    const samples = readWavPcm16Mono8k(file, wav);
    return { audio: { kind: 'samples', samples }, lengthMs: (samples.length * 1000) / TWILIO_SAMPLE_RATE };
  }
  const frequencyHz = number(tone, `${flag}-tone`) ?? defaultHz;
  if (frequencyHz < 0 || frequencyHz >= TWILIO_SAMPLE_RATE / 2) {
    usageError(`${flag}-tone must be between 0 and ${TWILIO_SAMPLE_RATE / 2} Hz`);
  }
  return { audio: { kind: 'tone', frequencyHz, amplitude }, lengthMs: 0 };
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      signalwire: { type: 'boolean', default: false },
      url: { type: 'string' },
      'signed-url': { type: 'string' },
      'account-sid': { type: 'string' },
      'auth-token': { type: 'string' },
      'project-id': { type: 'string' },
      token: { type: 'string' },
      'call-sid': { type: 'string' },
      'stream-sid': { type: 'string' },
      connect: { type: 'boolean', default: false },
      encoding: { type: 'string', default: 'mulaw' },
      duration: { type: 'string' },
      'inbound-tone': { type: 'string' },
      'outbound-tone': { type: 'string' },
      amplitude: { type: 'string' },
      'inbound-wav': { type: 'string' },
      'outbound-wav': { type: 'string' },
      realtime: { type: 'boolean', default: false },
      'max-ahead': { type: 'string' },
      recording: { type: 'string' },
      param: { type: 'string', multiple: true, default: [] },
      gap: { type: 'string', multiple: true, default: [] },
      dtmf: { type: 'string', multiple: true, default: [] },
      mark: { type: 'string', multiple: true, default: [] },
      'close-timeout': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stderr.write(USAGE);
    return 0;
  }

  const signalwire = values.signalwire;
  if (!signalwire && (values['project-id'] !== undefined || values.token !== undefined)) usageError('--project-id and --token go with --signalwire');
  const fallback = defaultAccount(signalwire);
  const accountSid = values['project-id'] ?? values['account-sid'] ?? fallback.accountSid;
  const authToken = values.token ?? values['auth-token'] ?? fallback.authToken;
  if (!accountSid || !authToken) {
    usageError(
      signalwire
        ? '--project-id and --token are required (or set SIGNALWIRE_PROJECTS)'
        : '--account-sid and --auth-token are required (or set TWILIO_ACCOUNTS)',
    );
  }

  const amplitude = number(values.amplitude, '--amplitude') ?? 0.5;
  if (amplitude < 0 || amplitude > 1) usageError('--amplitude must be between 0 and 1');
  const inbound = trackAudio(values['inbound-wav'], values['inbound-tone'], 440, amplitude, '--inbound');
  const outbound = trackAudio(values['outbound-wav'], values['outbound-tone'], 1000, amplitude, '--outbound');

  const durationSeconds = number(values.duration, '--duration');
  const wavMs = Math.max(inbound.lengthMs, values.connect ? 0 : outbound.lengthMs);
  const requestedMs = durationSeconds !== undefined ? durationSeconds * 1000 : wavMs > 0 ? wavMs : 5000;
  const durationMs = Math.ceil(requestedMs / SIMULATED_FRAME_MS) * SIMULATED_FRAME_MS;

  if (values.encoding !== 'mulaw' && values.encoding !== 'alaw') usageError('--encoding must be mulaw or alaw');

  let recording: unknown;
  if (values.recording !== undefined) {
    try {
      recording = JSON.parse(values.recording);
    } catch {
      usageError('--recording must be JSON, e.g. \'{"enabled":true,"stereo":true}\'');
    }
  }

  const customParameters: Record<string, string> = {};
  for (const p of values.param) {
    const [key, value] = splitOnce(p, '--param', '=');
    customParameters[key] = value;
  }

  const port = process.env['PORT'] ?? '8080';
  const options: SimulateTwilioCallOptions = {
    url: values.url ?? `ws://127.0.0.1:${port}/${signalwire ? 'signalwire' : 'twilio'}/media`,
    carrier: signalwire ? 'signalwire' : 'twilio',
    accountSid,
    authToken,
    mode: values.connect ? 'connect' : 'both_tracks',
    durationMs,
    inbound: inbound.audio,
    outbound: outbound.audio,
    customParameters,
    gaps: values.gap.map(gap),
    dtmf: values.dtmf.map((d) => timedEvent(d, '--dtmf')).map(({ atMs, value }) => ({ atMs, digit: value })),
    marks: values.mark.map((m) => timedEvent(m, '--mark')).map(({ atMs, value }) => ({ atMs, name: value })),
    realtime: values.realtime,
    encoding: values.encoding,
  };
  if (values['signed-url'] !== undefined) options.signedUrl = values['signed-url'];
  if (values['call-sid'] !== undefined) options.callSid = values['call-sid'];
  if (values['stream-sid'] !== undefined) options.streamSid = values['stream-sid'];
  if (recording !== undefined) options.recording = recording;
  const maxAheadMs = number(values['max-ahead'], '--max-ahead');
  if (maxAheadMs !== undefined) options.maxAheadMs = maxAheadMs;
  const closeTimeoutMs = number(values['close-timeout'], '--close-timeout');
  if (closeTimeoutMs !== undefined) options.closeTimeoutMs = closeTimeoutMs;

  process.stderr.write(`calling ${options.url} for ${durationMs} ms (${options.mode}${signalwire ? ', SignalWire' : ''})\n`);
  const result = await simulateTwilioCall(options);
  process.stderr.write(
    `sent ${result.framesSent} media frames (${result.messagesSent} messages); ` +
      `${result.closedBy === 'server' ? 'gateway closed' : 'gave up waiting, closed'} with ${result.closeCode}` +
      `${result.closeReason ? ` ${result.closeReason}` : ''}\n`,
  );
  process.stdout.write(`${result.callSid}\n`);
  return result.closeCode === 1000 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = isCallvaultError(err) || err instanceof Error ? err.message : String(err);
    process.stderr.write(`simulate: ${message}\n`);
    process.exitCode = 2;
  },
);
