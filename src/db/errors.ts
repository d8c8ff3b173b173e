import { CallvaultError, ErrorCode } from '../errors/index.js';

// Socket-level failures: the server is down, unreachable or dropped us; the same query may work later.
const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNABORTED',
]);

// SQLSTATEs meaning the server cannot serve us right now (shutdown, restart, connection limits, statement timeout).
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '53400', '57014']);

// SQLSTATEs meaning we will never get in with this configuration: retrying cannot help.
const MISCONFIGURED_SQLSTATES = new Set(['28000', '28P01', '3D000']);

// pg and pg-pool raise these as plain Errors without a code; their text is the only signal available.
const DRIVER_CONNECTION_MESSAGE =
  /timeout exceeded when trying to connect|connection terminated|connection error|not queryable|server closed the connection|terminating connection/i;

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isSqlState(code: string): boolean {
  return /^[0-9A-Z]{5}$/.test(code);
}

/**
 * Maps anything the driver throws onto a CallvaultError. Connection trouble becomes DATABASE_UNAVAILABLE so
 * readiness and request handlers can answer 503 rather than 500; constraint violations keep a code callers
 * can act on.
 */
export function translateDbError(err: unknown, operation: string): CallvaultError {
  if (err instanceof CallvaultError) return err;
  const code = sqlState(err);
  const details: Record<string, unknown> = { operation };
  if (code !== undefined) details['sqlState'] = code;
  const constraint = (err as { constraint?: unknown } | null)?.constraint;
  if (typeof constraint === 'string') details['constraint'] = constraint;

  if (code !== undefined && !isSqlState(code) && NETWORK_ERRNOS.has(code)) {
    return new CallvaultError(ErrorCode.DatabaseUnavailable, 'database unreachable', { cause: err, retryable: true, details });
  }
  if (code !== undefined && isSqlState(code)) {
    if (code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code)) {
      return new CallvaultError(ErrorCode.DatabaseUnavailable, 'database unavailable', { cause: err, retryable: true, details });
    }
    if (MISCONFIGURED_SQLSTATES.has(code)) {
      return new CallvaultError(ErrorCode.DatabaseUnavailable, 'database rejected the connection', {
        cause: err,
        retryable: false,
        details,
      });
    }
    switch (code) {
      case '23505':
        return new CallvaultError(ErrorCode.Conflict, 'already exists', { cause: err, details });
      case '23503':
        return new CallvaultError(ErrorCode.NotFound, 'referenced row does not exist', { cause: err, details });
      case '23502':
      case '23514':
      case '22P02':
      case '22003':
      case '22007':
      case '22008':
      // character_not_in_repertoire / untranslatable_character: a NUL byte (or invalid UTF-8) in a text value.
      case '22021':
      case '22P05':
        return new CallvaultError(ErrorCode.BadRequest, 'value rejected by the database', { cause: err, details });
      case '40001':
      case '40P01':
      case '55P03':
        return new CallvaultError(ErrorCode.Conflict, 'concurrent update, try again', { cause: err, retryable: true, details });
      default:
        return new CallvaultError(ErrorCode.Internal, 'database query failed', { cause: err, details });
    }
  }
  if (err instanceof Error && DRIVER_CONNECTION_MESSAGE.test(err.message)) {
    return new CallvaultError(ErrorCode.DatabaseUnavailable, 'database connection failed', { cause: err, retryable: true, details });
  }
  return new CallvaultError(ErrorCode.Internal, 'database query failed', { cause: err, details });
}
