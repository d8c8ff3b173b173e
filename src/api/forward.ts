/**
 * Control requests for a call or recording another gateway of the fleet holds: handed to that gateway over
 * HTTP, at the internal address it registers with its heartbeat, and answered with its response as it is
 * (status, JSON body, or the streamed audio of `?live=1`).
 *
 * HTTP to the owner rather than PostgreSQL LISTEN/NOTIFY: the owner answers the very same request through the
 * very same route (authentication, organisation scoping, rate limit, validation, error bodies), `?live=1`
 * streams through with backpressure (a NOTIFY payload is at most 8000 bytes and has no flow control), and
 * nothing new needs its own connection per gateway. The caller's own API key goes along, so the owner
 * authorises the request itself; the forwarding gateway marks it (FORWARDED_BY_HEADER) and a marked request is
 * never forwarded again, so two gateways that disagree about ownership cannot bounce it between them.
 */
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { GatewayPort } from '../gateway/port.js';
import type { HttpResult, RequestContext, StreamedResult } from '../http/http.js';
import { BackpressuredBody, ClientGone } from './wav-stream.js';

export const FORWARDED_BY_HEADER = 'x-callvault-forwarded-by';
/** How long the owner has to answer (its response headers, for a stream) before the request fails with 503. */
export const DEFAULT_FORWARD_TIMEOUT_MS = 10_000;

const REQUEST_HEADERS = ['authorization', 'content-type', 'range', 'accept'];
/** Hop-by-hop and framing headers: uWS frames the response it writes itself. */
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date']);

function ownerUnavailable(ownerGateway: string, reason: 'dead' | 'no_address' | 'unreachable' | 'timeout', cause?: unknown): CallvaultError {
  return new CallvaultError(ErrorCode.OwnerUnavailable, 'the gateway holding this call is unavailable', {
    retryable: true,
    details: { ownerGateway, reason },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Whether this request came from a peer (and so must be answered here, whatever the outcome). */
export function isForwarded(ctx: RequestContext): boolean {
  return ctx.headers.has(FORWARDED_BY_HEADER);
}

/**
 * Hands the request to `ownerGateway` and answers with its response; null when it is to be answered here
 * (no owner known, this gateway is the owner, or the request was forwarded to this gateway already).
 * OWNER_UNAVAILABLE (503) when the owner is dead, has no address, or does not answer in time.
 */
export async function forwardToOwner(ctx: RequestContext, gateway: GatewayPort, ownerGateway: string | null): Promise<HttpResult | StreamedResult | null> {
  if (ownerGateway === null || ownerGateway === gateway.fleet.gatewayId || isForwarded(ctx)) return null;
  const owner = await gateway.fleet.gateway(ownerGateway);
  if (!owner || !owner.alive) throw ownerUnavailable(ownerGateway, 'dead');
  if (!owner.internalUrl) throw ownerUnavailable(ownerGateway, 'no_address');
  const method = ctx.method === 'del' ? 'DELETE' : ctx.method.toUpperCase();
  const body = method === 'GET' || method === 'HEAD' ? undefined : await ctx.readBody();
  const headers: Record<string, string> = { [FORWARDED_BY_HEADER]: gateway.fleet.gatewayId };
  for (const name of REQUEST_HEADERS) {
    const value = ctx.headers.get(name);
    if (value !== undefined) headers[name] = value;
  }
  const timeoutMs = gateway.options.fleet?.forwardTimeoutMs ?? DEFAULT_FORWARD_TIMEOUT_MS;
  const abort = new AbortController();
  const onClientGone = (): void => abort.abort(new ClientGone());
  ctx.signal.addEventListener('abort', onClientGone, { once: true });
  const timer = setTimeout(() => abort.abort(ownerUnavailable(ownerGateway, 'timeout')), timeoutMs);
  const url = `${owner.internalUrl.replace(/\/$/, '')}${ctx.url}${ctx.rawQuery ? `?${ctx.rawQuery}` : ''}`;
  const log = { ownerGateway, method, path: ctx.url };
  try {
    let response: Response;
    try {
      response = await fetch(url, { method, headers, ...(body && body.length > 0 ? { body } : {}), signal: abort.signal, redirect: 'manual' });
    } catch (err) {
      const reason = abort.signal.reason instanceof CallvaultError ? 'timeout' : 'unreachable';
      throw ownerUnavailable(ownerGateway, reason, err);
    }
    const responseHeaders: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      if (!DROPPED_RESPONSE_HEADERS.has(name)) responseHeaders[name] = value;
    });
    responseHeaders[FORWARDED_BY_HEADER] = ownerGateway;
    const length = Number(response.headers.get('content-length') ?? NaN);
    gateway.options.logger.info({ ...log, status: response.status }, 'control request handed to the owning gateway');
    if (method === 'HEAD' || !response.body) {
      return { status: response.status, headers: responseHeaders, body: '', ...(Number.isSafeInteger(length) ? { contentLength: length } : {}) };
    }
    if (!Number.isSafeInteger(length) || length < 64 * 1024) {
      // Small (JSON) answers: read whole, within the same deadline.
      return { status: response.status, headers: responseHeaders, body: Buffer.from(await response.arrayBuffer()) };
    }
    // A stream (`?live=1`, media): its headers came in time; the body is copied through as it arrives.
    clearTimeout(timer);
    const out = new BackpressuredBody(ctx.res, length, ctx.signal);
    out.begin(response.status, responseHeaders);
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) await out.write(chunk);
      if (out.sent < length) out.abortConnection();
    } catch (err) {
      // The owner went away mid-body: the client sees a short body against Content-Length, never a wrong file.
      if (!(err instanceof ClientGone)) gateway.options.logger.warn({ ...log, err }, 'forwarded stream from the owning gateway broke off');
      out.abortConnection();
    }
    return { streamed: true, status: response.status };
  } catch (err) {
    if (err instanceof CallvaultError && err.code === ErrorCode.OwnerUnavailable) {
      gateway.options.logger.warn({ ...log, reason: err.details?.['reason'] }, 'the owning gateway is unavailable');
    }
    throw err;
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onClientGone);
  }
}
