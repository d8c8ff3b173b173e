/**
 * `callvault stream-url --call-sid CA… [--ttl <seconds>] [--public-url <url>]`: prints the `<Stream url>` for one
 * call, with a stream token bound to that CallSid and an expiry, signed with the gateway's master key
 * (`MASTER_KEY`, else `DATA_DIR/master.key`).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EnvFields } from '../config/index.js';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { DEFAULT_STREAM_TOKEN_TTL_MS, twilioStreamUrl } from '../ingest/twilio/stream-token.js';

export interface StreamUrlIo {
  stdout: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

const CALL_SID = /^CA[0-9a-fA-F]{32}$/;

/** MASTER_KEY, checked by the gateway's own schema, else the development key file the gateway generated. */
async function masterKey(env: NodeJS.ProcessEnv): Promise<Uint8Array> {
  const configured = env['MASTER_KEY'];
  if (configured) {
    const parsed = EnvFields.shape.MASTER_KEY.safeParse(configured);
    if (!parsed.success || !parsed.data) throw new CallvaultError(ErrorCode.ConfigInvalid, 'MASTER_KEY: expected base64 of exactly 32 bytes');
    return parsed.data;
  }
  const path = join(env['DATA_DIR'] || './data', 'master.key');
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) throw new CallvaultError(ErrorCode.ConfigInvalid, `MASTER_KEY is not set and ${path} does not exist`);
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) throw new CallvaultError(ErrorCode.ConfigInvalid, `${path} does not hold a 32-byte base64 key`);
  return key;
}

/** Throws `usage(message)` for bad arguments; returns the exit status otherwise. */
export async function streamUrl(args: string[], io: StreamUrlIo, usage: (message: string) => Error): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { 'call-sid': { type: 'string' }, ttl: { type: 'string' }, 'public-url': { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw usage('stream-url takes no positional arguments');
  const callSid = values['call-sid'];
  if (!callSid || !CALL_SID.test(callSid)) throw usage('--call-sid CA… (34 characters) is required');
  const ttlSeconds = values.ttl === undefined ? DEFAULT_STREAM_TOKEN_TTL_MS / 1000 : Number(values.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw usage('--ttl is a whole number of seconds');
  const publicUrl = values['public-url'] ?? io.env['PUBLIC_URL'];
  if (!publicUrl) throw usage('--public-url (or PUBLIC_URL) is required: the base URL Twilio reaches');
  if (!EnvFields.shape.PUBLIC_URL.safeParse(publicUrl).success) throw usage('--public-url is not an http(s) or ws(s) URL');
  const url = twilioStreamUrl(publicUrl, callSid, { masterKey: await masterKey(io.env), expiresAtMs: Date.now() + ttlSeconds * 1000 });
  io.stdout.write(`${url}\n`);
  return 0;
}
