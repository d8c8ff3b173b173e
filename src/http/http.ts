import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { GatewayMetrics } from '../metrics/index.js';

export type Method = 'get' | 'post' | 'put' | 'del' | 'head' | 'patch';

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  206: 'Partial Content',
  302: 'Found',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  507: 'Insufficient Storage',
};

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.PlaybackUrlInvalid]: 403,
  [ErrorCode.PlaybackUrlExpired]: 403,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.RecordingOptionsInvalid]: 400,
  [ErrorCode.ClientKeyWeak]: 400,
  [ErrorCode.RangeNotSatisfiable]: 416,
  [ErrorCode.TracksNotSeparate]: 409,
  [ErrorCode.TranscriptionNeedsServerKey]: 409,
  [ErrorCode.TranscriptionInProgress]: 409,
  [ErrorCode.ArtifactsSealed]: 409,
  [ErrorCode.ArtifactsNotSealed]: 409,
  [ErrorCode.ShuttingDown]: 503,
  [ErrorCode.OwnerUnavailable]: 503,
  [ErrorCode.DatabaseUnavailable]: 503,
  [ErrorCode.StorageUnavailable]: 503,
  [ErrorCode.SpoolFull]: 507,
  [ErrorCode.StreamLimitReached]: 429,
};

export function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Unknown'}`;
}

/**
 * Request data copied out of uWS's stack-allocated request before any await (uWS invalidates it when the
 * handler returns), plus the response with abort tracking.
 */
export interface RequestContext {
  method: string;
  url: string;
  /** The query string exactly as received (signatures are computed over it). */
  rawQuery: string;
  query: URLSearchParams;
  params: string[];
  headers: Map<string, string>;
  res: HttpResponse;
  aborted: boolean;
  /** Aborted when the client goes away, so streaming work (S3 reads) stops with it. */
  signal: AbortSignal;
  readBody(limitBytes?: number): Promise<Buffer>;
}

export type Handler = (ctx: RequestContext) => Promise<HttpResult | StreamedResult | void> | HttpResult | StreamedResult | void;

/**
 * What a handler that wrote the response itself returns once it is done, so the request is measured with
 * the status it really answered (and for the whole transfer, not just until the headers went out).
 */
export interface StreamedResult {
  streamed: true;
  status: number;
}

export function streamed(status: number): StreamedResult {
  return { streamed: true, status };
}

function isStreamed(result: HttpResult | StreamedResult): result is StreamedResult {
  return 'streamed' in result && result.streamed === true;
}

/** A complete, small response. Streaming handlers write to ctx.res themselves and return nothing. */
export interface HttpResult {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** For HEAD: the Content-Length the matching GET would have, without building that body. */
  contentLength?: number;
}

export function json(status: number, value: unknown, headers: Record<string, string> = {}): HttpResult {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(value) };
}

export function errorResult(err: CallvaultError): HttpResult {
  const status = STATUS_BY_CODE[err.code] ?? 500;
  const message = status === 500 ? 'internal error' : err.message;
  // RFC 9110: a 401 names the scheme the client should use.
  const headers: Record<string, string> = status === 401 ? { 'www-authenticate': 'Bearer' } : {};
  // RFC 6585: a 429 says when to come back.
  const retryAfter = err.details?.['retryAfterSeconds'];
  if (status === 429 && typeof retryAfter === 'number') headers['retry-after'] = String(retryAfter);
  return json(status, { error: { code: err.code, message, ...(status !== 500 && err.details ? { details: err.details } : {}) } }, headers);
}

export function writeResult(ctx: RequestContext, result: HttpResult): void {
  if (ctx.aborted) return;
  ctx.res.cork(() => {
    ctx.res.writeStatus(statusLine(result.status));
    for (const [name, value] of Object.entries(result.headers ?? {})) ctx.res.writeHeader(name, value);
    if (ctx.method === 'head') ctx.res.endWithoutBody(result.contentLength ?? (result.body === undefined ? 0 : Buffer.byteLength(result.body)));
    else ctx.res.end(result.body ?? '');
  });
}

export interface RegisteredRoute {
  method: Method;
  /** uWS syntax: `/calls/:callId/recording`. */
  pattern: string;
  routeName: string;
}

const MAX_BODY_BYTES = 1024 * 1024;
const BODY_METHODS: ReadonlySet<Method> = new Set<Method>(['post', 'put', 'patch', 'del']);

function tooLarge(maxBytes: number): CallvaultError {
  return new CallvaultError(ErrorCode.PayloadTooLarge, 'request body too large', { details: { maxBytes } });
}

/**
 * Buffers a request body up to `maxBytes`. Past that nothing more is kept (memory stays bounded whatever the
 * client sends) and the body rejects with PAYLOAD_TOO_LARGE once the request has been read.
 */
function collectBody(res: HttpResponse, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // A client that goes away mid-body settles the read, so nothing waits (or holds its chunks) forever.
    signal.addEventListener(
      'abort',
      () => {
        chunks.length = 0;
        reject(new CallvaultError(ErrorCode.BadRequest, 'the client went away before its body was read'));
      },
      { once: true },
    );
    res.onData((chunk, isLast) => {
      size += chunk.byteLength;
      if (size <= maxBytes) chunks.push(Buffer.from(chunk.slice(0)));
      else chunks.length = 0;
      if (isLast) {
        if (size > maxBytes) reject(tooLarge(maxBytes));
        else resolve(Buffer.concat(chunks));
      }
    });
  });
}

export interface RouteOptions {
  /** Largest body the route accepts (default 1 MiB); the body is buffered up to this size. */
  maxBodyBytes?: number;
  /**
   * Runs on the request headers before a byte of the body is read: a result answers the request at once and
   * the body is never buffered (a webhook whose signature header is malformed or stale costs no memory).
   */
  precheck?: (headers: ReadonlyMap<string, string>) => HttpResult | null;
}

/** A NUL byte in a path parameter or query value: PostgreSQL text cannot hold one, and no id or filter does. */
function hasNul(values: Iterable<string>): boolean {
  for (const value of values) if (value.includes('\u0000')) return true;
  return false;
}

export interface Router {
  route(method: Method, pattern: string, routeName: string, handler: Handler, options?: RouteOptions): void;
  /** Every route registered on this router's app, by any router: what the OpenAPI document must describe. */
  readonly routes: readonly RegisteredRoute[];
}

// Keyed by app because several modules (API, LiveKit ingest) each create their own router on one app.
const routesByApp = new WeakMap<TemplatedApp, RegisteredRoute[]>();

/** Every route registered through a router on this app, in registration order. */
export function registeredRoutes(app: TemplatedApp): readonly RegisteredRoute[] {
  return routesByApp.get(app) ?? [];
}

export function createRouter(app: TemplatedApp, deps: { logger: Logger; metrics: GatewayMetrics }): Router {
  let routes = routesByApp.get(app);
  if (!routes) {
    routes = [];
    routesByApp.set(app, routes);
  }
  const registry = routes;
  return {
    get routes() {
      return registry;
    },
    route(method, pattern, routeName, handler, options = {}) {
      const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
      registry.push({ method, pattern, routeName });
      app[method](pattern, (res: HttpResponse, req: HttpRequest) => {
        const started = performance.now();
        const abort = new AbortController();
        const paramCount = (pattern.match(/:/g) ?? []).length;
        const headers = new Map<string, string>();
        req.forEach((k, v) => headers.set(k, v));
        const early = options.precheck?.(headers) ?? null;
        if (early) {
          // Answered synchronously from the headers alone, and the connection closed: the body is never read.
          res.cork(() => {
            res.writeStatus(statusLine(early.status));
            for (const [name, value] of Object.entries(early.headers ?? {})) res.writeHeader(name, value);
            res.end(early.body ?? '', true);
          });
          deps.metrics.httpDuration.observe(
            { method: req.getCaseSensitiveMethod().toUpperCase(), route: routeName, status: String(early.status) },
            (performance.now() - started) / 1000,
          );
          return;
        }
        // uWS hands the body only to a reader registered before the handler's first await, so it is
        // collected here, up front, for every method that may carry one.
        const declaredLength = Number(headers.get('content-length') ?? '0');
        const hasBody = BODY_METHODS.has(method) && (headers.has('transfer-encoding') || declaredLength > 0);
        // A body declared larger than the route accepts is refused without reading a byte of it.
        const body = !hasBody
          ? Promise.resolve(Buffer.alloc(0))
          : declaredLength > maxBodyBytes
            ? Promise.reject(tooLarge(maxBodyBytes))
            : collectBody(res, maxBodyBytes, abort.signal);
        body.catch(() => undefined);
        // A malformed escape in the path must answer 400, not throw here, outside the handler's error path.
        let params: string[] | null = [];
        try {
          params = Array.from({ length: paramCount }, (_, i) => decodeURIComponent(req.getParameter(i) ?? ''));
        } catch {
          params = null;
        }
        const rawQuery = req.getQuery() ?? '';
        const ctx: RequestContext = {
          method: req.getCaseSensitiveMethod().toLowerCase(),
          url: req.getUrl(),
          rawQuery,
          query: new URLSearchParams(rawQuery),
          params: params ?? [],
          headers,
          res,
          aborted: false,
          signal: abort.signal,
          readBody: (limitBytes = maxBodyBytes) =>
            body.then((b) => {
              if (b.length > limitBytes) throw tooLarge(limitBytes);
              return b;
            }),
        };
        res.onAborted(() => {
          ctx.aborted = true;
          abort.abort();
        });
        const finish = (status: number): void => {
          deps.metrics.httpDuration.observe(
            { method: ctx.method.toUpperCase(), route: routeName, status: String(status) },
            (performance.now() - started) / 1000,
          );
        };
        Promise.resolve()
          .then(() => {
            if (params === null) throw new CallvaultError(ErrorCode.BadRequest, 'malformed percent-encoding in the path');
            if (hasNul(params) || hasNul(ctx.query.values()) || hasNul(ctx.query.keys())) {
              throw new CallvaultError(ErrorCode.BadRequest, 'a NUL byte in the path or query');
            }
            return handler(ctx);
          })
          .then(
            (result) => {
              if (result && isStreamed(result)) {
                finish(result.status);
              } else if (result) {
                writeResult(ctx, result);
                finish(result.status);
              } else {
                finish(200);
              }
            },
            (err: unknown) => {
              const error = isCallvaultError(err) ? err : new CallvaultError(ErrorCode.Internal, 'unhandled error', { cause: err });
              if (!isCallvaultError(err) || (STATUS_BY_CODE[error.code] ?? 500) === 500) {
                deps.logger.error({ route: routeName, code: error.code, err }, 'request failed');
              }
              const result = errorResult(error);
              writeResult(ctx, result);
              finish(result.status);
            },
          );
      });
    },
  };
}

/**
 * Every request no route matched answers a JSON 404 (uWS would otherwise leave it unanswered). uWS prefers
 * the most specific pattern, so this wildcard never shadows a registered route or WebSocket endpoint.
 */
export function registerNotFound(app: TemplatedApp, deps: { metrics: GatewayMetrics }): void {
  app.any('/*', (res: HttpResponse, req: HttpRequest) => {
    const method = req.getCaseSensitiveMethod().toUpperCase();
    const body = JSON.stringify({ error: { code: ErrorCode.NotFound, message: 'no such route' } });
    res.cork(() => {
      res.writeStatus(statusLine(404)).writeHeader('content-type', 'application/json');
      if (method === 'HEAD') res.endWithoutBody(Buffer.byteLength(body));
      else res.end(body);
    });
    deps.metrics.httpDuration.observe({ method, route: 'not_found', status: '404' }, 0);
  });
}
