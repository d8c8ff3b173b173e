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
  // A SignalWire project's token (SIGNALWIRE_PROJECTS).
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'password',
  '*.password',
];

/**
 * Fields HTTP client errors carry (axios, undici, the AWS SDK): the request configuration with its
 * Authorization header, the raw request and response. They never belong in a log line.
 */
const TRANSPORT_ERROR_FIELDS = ['config', 'request', 'response', 'headers', 'req', 'res', 'socket', 'agent', '$response'];

/** pino's error serializer, minus the transport fields of third-party errors, at every level it recurses into. */
export function serializeError(err: unknown): unknown {
  const serialized = pino.stdSerializers.err(err as Error) as unknown;
  const scrub = (value: unknown, depth: number): void => {
    if (depth > 5 || value === null || typeof value !== 'object') return;
    const record = value as Record<string, unknown>;
    for (const field of TRANSPORT_ERROR_FIELDS) delete record[field];
    for (const nested of Object.values(record)) scrub(nested, depth + 1);
  };
  scrub(serialized, 0);
  return serialized;
}

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
    serializers: { err: serializeError },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}

/**
 * A warning that a peer can trigger over and over (refused upgrades, refused webhooks, sockets closed for
 * overload): the first occurrence is logged, then at most one line per `intervalMs`, carrying how many were
 * left out since the last line (`suppressed`). Counters in /metrics keep the exact numbers.
 */
export function rateLimitedWarn(
  logger: Logger,
  msg: string,
  options: { intervalMs?: number; now?: () => number } = {},
): (fields: Record<string, unknown>) => void {
  const intervalMs = options.intervalMs ?? 10_000;
  const now = options.now ?? Date.now;
  let lastAt = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return (fields) => {
    const at = now();
    if (at - lastAt < intervalMs) {
      suppressed += 1;
      return;
    }
    logger.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
    lastAt = at;
    suppressed = 0;
  };
}
