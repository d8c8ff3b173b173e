/**
 * `callvault view`: look at a gateway's calls from a terminal, through its HTTP API (an API key with the read
 * scope). Non-interactive: `--list`, `--latest`, `--summary <callId>`, `--export <file> <callId>`. With none of
 * them, an interactive menu (node:readline) per call: summary, transcript, function calls, play the caller, bot
 * or stereo audio with the first player found on PATH (or CALLVAULT_PLAYER), export the transcript, download
 * the bundle.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';

export interface ViewIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

export const VIEW_USAGE = `usage:
  callvault view [--url <gateway>] [--api-key <key>]              interactive: pick a call, then its summary,
                                                                transcript, function calls, audio, export, bundle
  callvault view --list [--limit <n>]                           recent calls, newest first
  callvault view --latest                                       the newest call's summary
  callvault view --summary <callId>                             a call's summary
  callvault view --export <file> <callId>                       a call's transcript as text
--url and --api-key default to CALLVAULT_URL and CALLVAULT_API_KEY; audio plays with CALLVAULT_PLAYER if set,
else the first of aplay, paplay, play, afplay, xdg-open, start found on PATH.
`;

/** Players tried in order when CALLVAULT_PLAYER is unset. `start` is cmd.exe's, on Windows. */
export const PLAYERS = ['aplay', 'paplay', 'play', 'afplay', 'xdg-open', 'start'] as const;

const CALL_ID = /^[A-Za-z0-9._:@|-]{1,200}$/;

const ViewArgsSchema = z
  .object({
    url: z.url({ protocol: /^https?$/, error: '--url (or CALLVAULT_URL) is an http(s) URL of the gateway' }),
    apiKey: z.string({ error: '--api-key (or CALLVAULT_API_KEY) is required' }).min(1, '--api-key (or CALLVAULT_API_KEY) is required'),
    list: z.boolean(),
    latest: z.boolean(),
    summary: z.string().regex(CALL_ID, '--summary takes a call id (CallSid or room SID)').optional(),
    export: z.string().min(1, '--export takes a file name').optional(),
    callId: z.string().regex(CALL_ID, 'the call id is a CallSid or room SID').optional(),
    limit: z.coerce.number().int().min(1).max(100).default(20),
  })
  .strict()
  .refine((a) => [a.list, a.latest, a.summary !== undefined, a.export !== undefined].filter(Boolean).length <= 1, {
    message: 'give at most one of --list, --latest, --summary, --export',
  })
  .refine((a) => (a.export !== undefined) === (a.callId !== undefined), { message: '--export takes <file> <callId>; a call id goes with --export only' });

export type ViewArgs = z.infer<typeof ViewArgsSchema>;

export class ViewUsageError extends Error {}

export function parseViewArgs(args: string[], env: NodeJS.ProcessEnv): ViewArgs {
  const { values, positionals } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      'api-key': { type: 'string' },
      list: { type: 'boolean', default: false },
      latest: { type: 'boolean', default: false },
      summary: { type: 'string' },
      export: { type: 'string' },
      limit: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 1) throw new ViewUsageError('view takes at most one positional argument (the call id of --export)');
  const parsed = ViewArgsSchema.safeParse({
    url: values.url ?? env['CALLVAULT_URL'],
    apiKey: values['api-key'] ?? env['CALLVAULT_API_KEY'],
    list: values.list,
    latest: values.latest,
    summary: values.summary,
    export: values.export,
    callId: positionals[0],
    ...(values.limit === undefined ? {} : { limit: values.limit }),
  });
  if (!parsed.success) throw new ViewUsageError(parsed.error.issues.map((i) => i.message).join('; '));
  return parsed.data;
}

// ---- the gateway's API ---------------------------------------------------------------------------------

const ErrorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

const RecordingListSchema = z.object({
  recordings: z.array(
    z.object({
      callSid: z.string().nullable(),
      recordingSid: z.string(),
      status: z.string(),
      source: z.string(),
      durationMs: z.number().nullable(),
      channels: z.number(),
      startTime: z.string(),
    }),
  ),
});

const TranscriptSchema = z.object({
  conversation_id: z.string().nullable().optional(),
  session_id: z.string().nullable().optional(),
  entries: z.array(
    z.object({ timestamp: z.string(), channel: z.string(), type: z.string(), text: z.string(), confidence: z.number().nullable(), duration_ms: z.number().nullable() }),
  ),
});

const EventsSchema = z.object({ events: z.array(z.looseObject({ timestamp: z.string(), type: z.string() })) });

const MetadataSchema = z.looseObject({
  conversation_id: z.string().nullable().optional(),
  session_id: z.string().nullable().optional(),
  call_id: z.string(),
  source: z.string(),
  status: z.string(),
  start_time: z.string().nullable().optional(),
  end_time: z.string().nullable().optional(),
  duration_seconds: z.number().nullable(),
  caller_audio_duration_seconds: z.number().nullable().optional(),
  bot_audio_duration_seconds: z.number().nullable().optional(),
  caller_audio_chunks: z.number().nullable().optional(),
  bot_audio_chunks: z.number().nullable().optional(),
  transcript_entries: z.number(),
  function_calls: z.array(z.looseObject({ function_name: z.unknown() })),
  recording: z
    .looseObject({
      recording_sid: z.string(),
      status: z.string(),
      sample_rate: z.number(),
      channels: z.number(),
      key_mode: z.string(),
      duration_seconds: z.number().nullable(),
    })
    .nullable(),
  speech: z.looseObject({ detector: z.string() }).nullable().optional(),
});

export type Track = 'caller' | 'bot' | 'stereo';

export interface CallListing {
  callId: string;
  startTime: string;
  status: string;
  source: string;
  durationMs: number | null;
  channels: number;
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

export class GatewayClient {
  readonly #base: string;
  readonly #key: string;

  constructor(url: string, apiKey: string) {
    this.#base = url.replace(/\/+$/, '');
    this.#key = apiKey;
  }

  async #get(path: string): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, { headers: { authorization: `Bearer ${this.#key}` } });
    } catch (err) {
      throw new CallvaultError(ErrorCode.Internal, `the gateway at ${this.#base} did not answer`, { cause: err, retryable: true });
    }
    if (res.ok) return res;
    const text = await res.text();
    const body = ErrorBodySchema.safeParse((() => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        // Not the gateway's JSON error (a proxy's page): the status alone says what happened.
        return null;
      }
    })());
    const code = body.success && KNOWN_CODES.has(body.data.error.code) ? (body.data.error.code as ErrorCode) : ErrorCode.Internal;
    throw new CallvaultError(code, body.success ? body.data.error.message : `the gateway answered HTTP ${res.status}`, {
      details: { status: res.status },
      retryable: res.status >= 500,
    });
  }

  async #json<T extends z.ZodType>(path: string, schema: T): Promise<z.infer<T>> {
    const res = await this.#get(path);
    const parsed = schema.safeParse(await res.json());
    if (!parsed.success) throw new CallvaultError(ErrorCode.Internal, `unexpected answer from ${path}`, { cause: parsed.error });
    return parsed.data;
  }

  /** Recent calls, newest first: one line per call (its first recording listed), from the recordings list. */
  async calls(limit: number): Promise<CallListing[]> {
    const page = await this.#json(`/api/call-recordings?limit=100`, RecordingListSchema);
    const seen = new Set<string>();
    const out: CallListing[] = [];
    for (const r of page.recordings) {
      if (!r.callSid || seen.has(r.callSid)) continue;
      seen.add(r.callSid);
      out.push({ callId: r.callSid, startTime: r.startTime, status: r.status, source: r.source, durationMs: r.durationMs, channels: r.channels });
      if (out.length >= limit) break;
    }
    return out;
  }

  metadata(callId: string) {
    return this.#json(`/calls/${encodeURIComponent(callId)}/metadata`, MetadataSchema);
  }

  transcript(callId: string) {
    return this.#json(`/calls/${encodeURIComponent(callId)}/transcript`, TranscriptSchema);
  }

  async functionCalls(callId: string): Promise<Record<string, unknown>[]> {
    const { events } = await this.#json(`/calls/${encodeURIComponent(callId)}/events`, EventsSchema);
    return events.filter((e) => e.type === 'function_call');
  }

  /** Streams a route's body to a file. */
  async download(path: string, file: string): Promise<void> {
    const res = await this.#get(path);
    if (!res.body) throw new CallvaultError(ErrorCode.Internal, `empty answer from ${path}`);
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), createWriteStream(file));
  }

  recordingPath(callId: string, track: Track): string {
    return `/calls/${encodeURIComponent(callId)}/recording${track === 'stereo' ? '' : `?track=${track}`}`;
  }

  bundlePath(callId: string): string {
    return `/calls/${encodeURIComponent(callId)}/bundle`;
  }
}

// ---- text ------------------------------------------------------------------------------------------------

function seconds(value: number | null | undefined): string {
  return value === null || value === undefined ? '-' : `${value.toFixed(1)} s`;
}

export function formatList(calls: readonly CallListing[]): string {
  if (calls.length === 0) return 'no calls';
  const lines = [`${'#'.padEnd(4)}${'CALL'.padEnd(38)}${'STARTED'.padEnd(26)}${'DURATION'.padEnd(10)}${'STATUS'.padEnd(13)}SOURCE`];
  calls.forEach((c, i) => {
    lines.push(
      `${String(i + 1).padEnd(4)}${c.callId.padEnd(38)}${c.startTime.padEnd(26)}${seconds(c.durationMs === null ? null : c.durationMs / 1000).padEnd(10)}${c.status.padEnd(13)}${c.source}`,
    );
  });
  return lines.join('\n');
}

export function formatSummary(m: z.infer<typeof MetadataSchema>): string {
  const rec = m.recording;
  const names = m.function_calls.map((f) => String(f.function_name ?? '?'));
  const speech = m.speech as Record<string, unknown> | null | undefined;
  const speechLine = !speech
    ? '-'
    : 'caller_speech_seconds' in speech
      ? `caller ${seconds(speech['caller_speech_seconds'] as number)}, bot ${seconds(speech['bot_speech_seconds'] as number)} (${String(speech['detector'])})`
      : `mixed ${seconds(speech['mixed_speech_seconds'] as number)} (${String(speech['detector'])})`;
  const rows: [string, string][] = [
    ['Call', m.call_id],
    ['Conversation', m.conversation_id ?? '-'],
    ['Session', m.session_id ?? '-'],
    ['Source', m.source],
    ['Status', m.status],
    ['Started', m.start_time ?? '-'],
    ['Ended', m.end_time ?? '-'],
    // The media's length (what --list shows), then how long the call was connected by the clock.
    ['Duration', seconds(rec?.duration_seconds ?? m.duration_seconds)],
    ['Call time', seconds(m.duration_seconds)],
    [
      'Recording',
      rec ? `${rec.recording_sid} ${rec.status}, ${rec.channels === 2 ? 'stereo' : 'mono'}, ${rec.sample_rate} Hz, ${rec.key_mode} key, ${seconds(rec.duration_seconds)}` : '-',
    ],
    ['Caller audio', `${seconds(m.caller_audio_duration_seconds)} (${m.caller_audio_chunks ?? 0} chunks)`],
    ['Bot audio', `${seconds(m.bot_audio_duration_seconds)} (${m.bot_audio_chunks ?? 0} chunks)`],
    ['Transcript', `${m.transcript_entries} entries`],
    ['Function calls', names.length === 0 ? '0' : `${names.length}: ${names.join(', ')}`],
    ['Speech', speechLine],
  ];
  return rows.map(([k, v]) => `${k.padEnd(16)}${v}`).join('\n');
}

export function formatTranscript(callId: string, t: z.infer<typeof TranscriptSchema>): string {
  const lines = [`Transcript of call ${callId}${t.conversation_id ? ` (conversation ${t.conversation_id})` : ''}`];
  if (t.entries.length === 0) lines.push('(no transcript entries)');
  for (const e of t.entries) lines.push(`[${e.timestamp}] ${e.channel}: ${e.text}`);
  return lines.join('\n');
}

export function formatFunctionCalls(calls: readonly Record<string, unknown>[]): string {
  if (calls.length === 0) return '(no function calls)';
  return calls
    .map((c) => {
      const id = c['call_id'] ? ` [${String(c['call_id'])}]` : '';
      return `[${String(c['timestamp'])}] ${String(c['function_name'] ?? '?')}(${JSON.stringify(c['arguments'] ?? null)}) -> ${JSON.stringify(c['result'] ?? null)}${id}`;
    })
    .join('\n');
}

// ---- playing -------------------------------------------------------------------------------------------

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | null> {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, process.platform === 'win32' && name !== 'start' ? `${name}.exe` : name);
    const found = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (found) return candidate;
  }
  return null;
}

/** The command that plays a file: CALLVAULT_PLAYER, else the first player on PATH; null when there is none. */
export async function findPlayer(env: NodeJS.ProcessEnv): Promise<{ command: string; args: string[] } | null> {
  const override = env['CALLVAULT_PLAYER'];
  if (override) return { command: override, args: [] };
  for (const name of PLAYERS) {
    // `start` is a cmd.exe built-in, never a file on PATH.
    if (name === 'start') {
      if (process.platform === 'win32') return { command: 'cmd', args: ['/c', 'start', '""'] };
      continue;
    }
    const path = await onPath(name, env);
    if (path) return { command: path, args: [] };
  }
  return null;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: 'ignore', env });
    child.once('error', fail);
    child.once('exit', (code) => done(code ?? 1));
  });
}

// ---- modes ---------------------------------------------------------------------------------------------

function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function exportTranscript(client: GatewayClient, callId: string, file: string): Promise<string> {
  const text = formatTranscript(callId, await client.transcript(callId));
  const path = resolve(file);
  await writeFile(path, `${text}\n`);
  return path;
}

const MENU = `  1) Call summary
  2) Transcript
  3) Function calls
  4) Play caller audio
  5) Play bot audio
  6) Play stereo audio
  7) Export transcript
  8) Download bundle
  9) Choose another call
  q) Quit`;

class Interactive {
  readonly #rl: Interface;
  /** Lines read but not asked for yet (piped input arrives all at once), and the question waiting for one. */
  readonly #lines: string[] = [];
  #waiting: ((line: string | null) => void) | null = null;
  #ended = false;
  #tempDir: string | null = null;

  constructor(
    readonly client: GatewayClient,
    readonly io: ViewIo,
    readonly limit: number,
  ) {
    this.#rl = createInterface({ input: io.stdin, terminal: false });
    this.#rl.on('line', (line) => {
      if (this.#waiting) {
        const answer = this.#waiting;
        this.#waiting = null;
        answer(line);
      } else {
        this.#lines.push(line);
      }
    });
    this.#rl.once('close', () => {
      this.#ended = true;
      this.#waiting?.(null);
      this.#waiting = null;
    });
  }

  /** The next answer, trimmed; null once the input ended. */
  async #ask(prompt: string): Promise<string | null> {
    this.io.stdout.write(prompt);
    const queued = this.#lines.shift();
    const line =
      queued ??
      (this.#ended
        ? null
        : await new Promise<string | null>((answer) => {
            this.#waiting = answer;
          }));
    // A terminal echoes what was typed; piped answers are echoed here so the output reads like a session.
    if (!(this.io.stdin as { isTTY?: boolean }).isTTY) this.io.stdout.write(`${line ?? ''}\n`);
    return line === null ? null : line.trim();
  }

  async #pickCall(): Promise<string | null> {
    for (;;) {
      const calls = await this.client.calls(this.limit);
      write(this.io.stdout, formatList(calls));
      if (calls.length === 0) return null;
      const answer = await this.#ask(`Choose a call [1-${calls.length}], r to refresh, q to quit: `);
      if (answer === null || answer === 'q') return null;
      if (answer === 'r') continue;
      const n = Number(answer);
      const picked = Number.isInteger(n) ? calls[n - 1] : calls.find((c) => c.callId === answer);
      if (picked) return picked.callId;
      write(this.io.stdout, `no call ${answer}`);
    }
  }

  async #play(callId: string, track: Track): Promise<void> {
    const player = await findPlayer(this.io.env);
    if (!player) {
      write(this.io.stdout, `no audio player found (tried ${PLAYERS.join(', ')}); set CALLVAULT_PLAYER`);
      return;
    }
    this.#tempDir ??= await mkdtemp(join(tmpdir(), 'callvault-view-'));
    const file = join(this.#tempDir, `${callId}-${track}.wav`);
    await this.client.download(this.client.recordingPath(callId, track), file);
    write(this.io.stdout, `playing ${track} audio (${file})`);
    const code = await run(player.command, [...player.args, file], this.io.env);
    write(this.io.stdout, code === 0 ? `played ${track} audio` : `the player exited with status ${code}`);
  }

  /** One menu action; false to choose another call. */
  async #act(callId: string, choice: string): Promise<boolean | 'quit'> {
    switch (choice) {
      case '1':
        write(this.io.stdout, formatSummary(await this.client.metadata(callId)));
        return true;
      case '2':
        write(this.io.stdout, formatTranscript(callId, await this.client.transcript(callId)));
        return true;
      case '3':
        write(this.io.stdout, formatFunctionCalls(await this.client.functionCalls(callId)));
        return true;
      case '4':
      case '5':
      case '6':
        await this.#play(callId, choice === '4' ? 'caller' : choice === '5' ? 'bot' : 'stereo');
        return true;
      case '7': {
        const suggested = `${callId}-transcript.txt`;
        const file = await this.#ask(`Export the transcript to [${suggested}]: `);
        if (file === null) return 'quit';
        write(this.io.stdout, `exported the transcript to ${await exportTranscript(this.client, callId, file || suggested)}`);
        return true;
      }
      case '8': {
        const suggested = `${callId}-bundle.zip`;
        const answer = await this.#ask(`Save the bundle to [${suggested}]: `);
        if (answer === null) return 'quit';
        const file = resolve(answer || suggested);
        await this.client.download(this.client.bundlePath(callId), file);
        write(this.io.stdout, `saved the bundle to ${file}`);
        return true;
      }
      case '9':
        return false;
      case 'q':
        return 'quit';
      default:
        write(this.io.stdout, `unknown choice ${choice}`);
        return true;
    }
  }

  async run(): Promise<void> {
    try {
      for (;;) {
        const callId = await this.#pickCall();
        if (callId === null) return;
        for (;;) {
          write(this.io.stdout, `\nCall ${callId}\n${MENU}`);
          const choice = await this.#ask('Choice: ');
          if (choice === null) return;
          let next: boolean | 'quit';
          try {
            next = await this.#act(callId, choice);
          } catch (err) {
            // Shown and the menu goes on: a 409 for one track must not end the session.
            if (!isCallvaultError(err)) throw err;
            write(this.io.stdout, `error: ${err.code}: ${err.message}`);
            next = true;
          }
          if (next === 'quit') return;
          if (!next) break;
        }
      }
    } finally {
      this.#rl.close();
      if (this.#tempDir) await rm(this.#tempDir, { recursive: true, force: true });
    }
  }
}

export async function view(args: string[], io: ViewIo): Promise<number> {
  const a = parseViewArgs(args, io.env);
  const client = new GatewayClient(a.url, a.apiKey);
  if (a.list) {
    write(io.stdout, formatList(await client.calls(a.limit)));
    return 0;
  }
  if (a.latest || a.summary !== undefined) {
    let callId = a.summary;
    if (callId === undefined) {
      const [newest] = await client.calls(1);
      if (!newest) throw new CallvaultError(ErrorCode.NotFound, 'the organisation has no calls');
      callId = newest.callId;
    }
    write(io.stdout, formatSummary(await client.metadata(callId)));
    return 0;
  }
  if (a.export !== undefined && a.callId !== undefined) {
    const path = await exportTranscript(client, a.callId, a.export);
    write(io.stderr, `wrote the transcript of ${a.callId} to ${path}`);
    return 0;
  }
  await new Interactive(client, io, a.limit).run();
  return 0;
}
