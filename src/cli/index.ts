/**
 * `callvault` command line: API key management against the gateway's PostgreSQL, and client-side decryption.
 *
 *   callvault keys create --org <org> [--label <text>] [--scope read|control|delete|admin]... [--user <userId>] [--json]
 *   callvault keys list --org <org> [--json]
 *   callvault keys revoke --org <org> <key-id>
 *   callvault decrypt --key <client-key> <encrypted-file-or-url> <out.wav>
 *   callvault stream-url --call-sid <CA…> [--ttl <seconds>] [--public-url <url>]
 *   callvault view [--url <gateway>] [--api-key <key>] [--list | --latest | --summary <callId> | --export <file> <callId>]
 */
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';
import { API_KEY_SCOPES, createDatabase, type ApiKeyScope, type Database } from '../db/index.js';
import { USER_ID } from '../config/index.js';
import { decryptRecordingToWav } from '../crypto/index.js';
import { createLogger } from '../log/index.js';
import { streamUrl } from './stream-url.js';
import { view, VIEW_USAGE, ViewUsageError } from './view.js';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** What `view`'s interactive mode reads its answers from; none: it reads nothing (as at end of input). */
  stdin?: NodeJS.ReadableStream;
}

/** Exit statuses: sysexits-style, so scripts can tell a typo from a failure. */
export const EXIT = { ok: 0, failure: 1, usage: 64, config: 78 } as const;

export const USAGE = `usage:
  callvault keys create --org <org> [--label <text>] [--scope <scope>]... [--user <userId>] [--json]
                                                                create an API key (shown once); scopes: read,
                                                                control, delete, admin (repeat or comma-separate;
                                                                default all); --user binds it to one user's calls
  callvault keys list --org <org> [--json]                      list an organisation's keys (never the secrets)
  callvault keys revoke --org <org> <key-id>                    revoke a key
  callvault decrypt --key <client-key> <encrypted-file-or-url> <out.wav>
                                                                verify and decrypt a client-key recording
                                                                (or a call's transcript / events / metadata:
                                                                writes its JSON as stored)
  callvault stream-url --call-sid <CA…> [--ttl <seconds>] [--public-url <url>]
                                                                a Twilio <Stream url> with a stream token for that call
keys commands use DATABASE_URL; stream-url uses MASTER_KEY (or DATA_DIR/master.key) and PUBLIC_URL.
${VIEW_USAGE}`;

const ORG_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

class UsageError extends Error {}

function requireOrg(org: string | undefined): string {
  if (!org) throw new UsageError('--org is required');
  if (!ORG_ID.test(org)) throw new UsageError('--org must be lowercase letters, digits, _ and - (at most 63)');
  return org;
}

async function withDatabase<T>(io: CliIo, run: (db: Database) => Promise<T>): Promise<T> {
  const url = io.env['DATABASE_URL'];
  if (!url) throw new CallvaultError(ErrorCode.ConfigInvalid, 'DATABASE_URL is not set');
  const db = createDatabase({ url, logger: createLogger({ level: 'silent' }), max: 2 });
  try {
    await db.migrate();
    return await run(db);
  } finally {
    await db.close();
  }
}

function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** `--scope read --scope control` or `--scope read,control`; none given: every scope. */
function scopesOf(given: string[] | undefined): ApiKeyScope[] {
  if (!given || given.length === 0) return [...API_KEY_SCOPES];
  const named = given.flatMap((g) => g.split(',')).map((g) => g.trim()).filter((g) => g.length > 0);
  const unknown = named.filter((n) => !(API_KEY_SCOPES as readonly string[]).includes(n));
  if (unknown.length > 0 || named.length === 0) throw new UsageError(`--scope is one of ${API_KEY_SCOPES.join(', ')}`);
  return API_KEY_SCOPES.filter((s) => named.includes(s));
}

async function keys(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      org: { type: 'string' },
      label: { type: 'string' },
      scope: { type: 'string', multiple: true },
      user: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const org = requireOrg(values.org);
  switch (action) {
    case 'create': {
      if (positionals.length > 0) throw new UsageError('keys create takes no positional arguments');
      const scopes = scopesOf(values.scope);
      if (values.user !== undefined && !USER_ID.test(values.user)) throw new UsageError('--user is 1 to 200 letters, digits or ._:@|-');
      const created = await withDatabase(io, async (db) => {
        await db.organisations.ensure(org);
        return db.apiKeys.create(org, { label: values.label, scopes, userId: values.user });
      });
      if (values.json) {
        write(io.stdout, JSON.stringify({ id: created.id, org, prefix: created.prefix, label: values.label ?? null, scopes, userId: values.user ?? null, key: created.key }));
      } else {
        write(
          io.stdout,
          `id      ${created.id}\norg     ${org}\nprefix  ${created.prefix}\nscopes  ${scopes.join(',')}\nuser    ${values.user ?? '(all users)'}\nkey     ${created.key}`,
        );
        write(io.stderr, 'The key is shown only now; only its hash is stored. Use it as "Authorization: Bearer <key>".');
      }
      return EXIT.ok;
    }
    case 'list': {
      if (positionals.length > 0) throw new UsageError('keys list takes no positional arguments');
      const list = await withDatabase(io, (db) => db.apiKeys.list(org));
      if (values.json) {
        write(io.stdout, JSON.stringify(list.map((k) => ({ ...k, createdAt: k.createdAt.toISOString(), revokedAt: k.revokedAt?.toISOString() ?? null }))));
      } else {
        const lines = ['ID                                    PREFIX        STATUS   CREATED                   SCOPES                   USER        LABEL'];
        for (const k of list) {
          lines.push(
            `${k.id.padEnd(38)}${k.prefix.padEnd(14)}${(k.revokedAt ? 'revoked' : 'active').padEnd(9)}${k.createdAt.toISOString().padEnd(26)}${k.scopes.join(',').padEnd(25)}${(k.userId ?? '-').padEnd(12)}${k.label ?? ''}`,
          );
        }
        write(io.stdout, lines.join('\n'));
      }
      return EXIT.ok;
    }
    case 'revoke': {
      const [id, ...extra] = positionals;
      if (!id || extra.length > 0) throw new UsageError('keys revoke takes exactly one key id');
      const revoked = await withDatabase(io, (db) => db.apiKeys.revoke(org, id));
      if (!revoked) throw new CallvaultError(ErrorCode.NotFound, `no active key ${id} in organisation ${org}`);
      write(io.stdout, `revoked ${id}`);
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown keys command: ${action ?? '(none)'}`);
  }
}

async function decrypt(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { key: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (!values.key) throw new UsageError('--key is required (the client key the recording was made with)');
  const [input, output, ...extra] = positionals;
  if (!input || !output || extra.length > 0) throw new UsageError('decrypt takes <encrypted-file-or-url> <out.wav>');
  const result = await decryptRecordingToWav({ input, output, key: values.key });
  if (result.sampleFormat === 'none') {
    // A call's transcript, events or metadata (a version 2 object): the output is the document as stored.
    write(io.stderr, `wrote ${output}: ${result.contentType ?? 'document'} as stored, ${result.bytes} bytes`);
    return EXIT.ok;
  }
  if (result.sampleFormat === 'mp3') {
    // Stored as received (ElevenLabs): the output is that MP3, not a WAV, whatever its file name says.
    write(io.stderr, `wrote ${output}: MP3 audio as stored (not a WAV; name it .mp3), ${result.bytes} bytes`);
    return EXIT.ok;
  }
  write(
    io.stderr,
    `wrote ${output}: ${result.durationSeconds.toFixed(3)} s, ${result.sampleRate} Hz, ${result.channels === 2 ? 'stereo' : 'mono'}, ${result.bytes} bytes`,
  );
  return EXIT.ok;
}

/** Runs one command; returns the exit status. Never prints key material except the key `keys create` made. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'keys':
        return await keys(rest, io);
      case 'decrypt':
        return await decrypt(rest, io);
      case 'view':
        return await view(rest, { stdin: io.stdin ?? Readable.from([]), stdout: io.stdout, stderr: io.stderr, env: io.env });
      case 'stream-url':
        return await streamUrl(rest, io, (message) => new UsageError(message));
      case 'help':
      case '--help':
      case '-h':
        write(io.stdout, USAGE);
        return EXIT.ok;
      default:
        throw new UsageError(command ? `unknown command: ${command}` : 'no command given');
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ViewUsageError || (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) {
      write(io.stderr, `callvault: ${err.message}\n\n${USAGE}`);
      return EXIT.usage;
    }
    if (isCallvaultError(err)) {
      write(io.stderr, `callvault: ${err.code}: ${err.message}`);
      return err.code === ErrorCode.ConfigInvalid ? EXIT.config : EXIT.failure;
    }
    write(io.stderr, `callvault: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.failure;
  }
}
