import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that may hold secrets. Messages are static strings; everything variable goes in fields,
 * and these fields are censored wherever they appear.
 */
const REDACT_PATHS = [
  'key',
  '*.key',
  'clientKey',
  '*.clientKey',
  'dataKey',
  '*.dataKey',
  'masterKey',
  '*.masterKey',
  'authToken',
  '*.authToken',
  'apiKey',
  '*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'password',
  '*.password',
];

export interface LoggerOptions {
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream to assert on lines. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const opts = {
    level: options.level ?? 'info',
    base: { service: 'callvault' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}
