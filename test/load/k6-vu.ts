/**
 * The k6 APIs the load scripts use, for one VU in a worker thread (test/load/k6-harness.ts starts it):
 * `k6` (check, group, sleep, fail), `k6/http`, `k6/ws` (blocking, with its own event loop, like k6's),
 * `k6/websockets` and `k6/timers` (on the worker's event loop, like k6's global event loop), `k6/crypto`,
 * `k6/encoding`, `k6/metrics`, `k6/execution`, and the globals __ENV, __VU, __ITER.
 *
 * k6's calls block; here the blocking ones post a request to the host thread (which has the sockets) and
 * wait with Atomics.wait for its answer. Metrics are kept as samples with tags, so thresholds (including
 * sub-metric ones such as `http_req_duration{name:list}`) are evaluated the way k6 evaluates them.
 *
 * This file is compiled with `typescript` by the harness at run time; it imports nothing but Node built-ins,
 * `ws` and types.
 */
import { createHash, createHmac, randomBytes as nodeRandomBytes } from 'node:crypto';
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { inspect } from 'node:util';
import NodeWebSocket from 'ws';
import type {
  CheckResult,
  HostMessage,
  HttpRecord,
  HttpResponseMessage,
  K6RunResult,
  MetricSummary,
  ThresholdResult,
  VuWorkerData,
  WorkerMessage,
  WsCommand,
  WsEvent,
  WsRecord,
} from './k6-protocol.js';

type Tags = Record<string, string>;

// ---------------------------------------------------------------------------------------------------
// Host link: blocking request/answer over a MessagePort and a shared counter
// ---------------------------------------------------------------------------------------------------

let link: { port: MessagePort; signal: Int32Array } | null = null;
const inbox: HostMessage[] = [];

function hostLink(): { port: MessagePort; signal: Int32Array } {
  if (!link) throw new Error('the k6 harness runtime is not running in a VU worker');
  return link;
}

function post(message: WorkerMessage | WsCommand): void {
  hostLink().port.postMessage(message);
}

/** Waits until the host posted something or `deadline` (ms since epoch) passed; false on timeout. */
function pump(deadline: number): boolean {
  const { port, signal } = hostLink();
  for (;;) {
    const seen = Atomics.load(signal, 0);
    let got = receiveMessageOnPort(port);
    if (got) {
      while (got) {
        inbox.push(got.message as HostMessage);
        got = receiveMessageOnPort(port);
      }
      return true;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) return false;
    Atomics.wait(signal, 0, seen, remaining === Infinity ? undefined : remaining);
  }
}

function take<T extends HostMessage>(match: (m: HostMessage) => m is T, deadline: number): T | undefined {
  for (;;) {
    const i = inbox.findIndex(match);
    if (i >= 0) return inbox.splice(i, 1)[0] as T;
    if (!pump(deadline)) return undefined;
  }
}

function blockFor(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---------------------------------------------------------------------------------------------------
// Execution context
// ---------------------------------------------------------------------------------------------------

const context = {
  scenario: 'setup',
  executor: '',
  vu: 0,
  iterationInScenario: 0,
  iterationInTest: 0,
  groups: [] as string[],
  startedAt: Date.now(),
};

function groupPath(): string {
  return context.groups.length === 0 ? '' : `::${context.groups.join('::')}`;
}

function baseTags(): Tags {
  return { scenario: context.scenario, group: groupPath() };
}

const logs: string[] = [];
const requests: HttpRecord[] = [];
const sockets: WsRecord[] = [];
const asyncErrors: string[] = [];

function describeError(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : inspect(err);
}

// ---------------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------------

type MetricType = MetricSummary['type'];

interface MetricState {
  type: MetricType;
  isTime: boolean;
  samples: Array<{ value: number; tags: Tags }>;
}

const registry = new Map<string, MetricState>();
const METRIC_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,127}$/;

function defineMetric(name: string, type: MetricType, isTime = false): MetricState {
  if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
  const existing = registry.get(name);
  if (existing) {
    if (existing.type !== type) throw new Error(`metric "${name}" already exists as a ${existing.type}`);
    return existing;
  }
  const state: MetricState = { type, isTime, samples: [] };
  registry.set(name, state);
  return state;
}

function addSample(name: string, value: number, tags: Tags = {}): void {
  const metric = registry.get(name);
  if (!metric) throw new Error(`metric ${name} is not defined`);
  metric.samples.push({ value, tags: { ...baseTags(), ...tags } });
}

for (const [name, type, isTime] of [
  ['checks', 'rate', false],
  ['iterations', 'counter', false],
  ['iteration_duration', 'trend', true],
  ['group_duration', 'trend', true],
  ['http_reqs', 'counter', false],
  ['http_req_duration', 'trend', true],
  ['http_req_failed', 'rate', false],
  ['data_received', 'counter', false],
  ['data_sent', 'counter', false],
  ['ws_connecting', 'trend', true],
  ['ws_sessions', 'counter', false],
  ['ws_session_duration', 'trend', true],
  ['ws_msgs_sent', 'counter', false],
  ['ws_msgs_received', 'counter', false],
] as const) {
  defineMetric(name, type, isTime);
}

let initContext = true;

abstract class Metric {
  readonly name: string;
  constructor(name: string, type: MetricType, isTime = false) {
    if (!initContext) throw new Error(`metric ${name}: metrics can only be created in the init context`);
    defineMetric(name, type, isTime);
    this.name = name;
  }
  add(value: number | boolean, tags?: Tags): void {
    if (initContext) throw new Error(`metric ${this.name}: samples can only be added in VU code`);
    addSample(this.name, typeof value === 'boolean' ? (value ? 1 : 0) : Number(value), tags);
  }
}
class Counter extends Metric {
  constructor(name: string, isTime?: boolean) {
    super(name, 'counter', isTime);
  }
}
class Gauge extends Metric {
  constructor(name: string, isTime?: boolean) {
    super(name, 'gauge', isTime);
  }
}
class Rate extends Metric {
  constructor(name: string, isTime?: boolean) {
    super(name, 'rate', isTime);
  }
}
class Trend extends Metric {
  constructor(name: string, isTime?: boolean) {
    super(name, 'trend', isTime);
  }
}

/** k6's TrendSink percentile: linear interpolation between the closest ranks. */
function percentile(sorted: number[], pct: number): number {
  if (sorted.length === 0) return 0;
  if (sorted.length === 1) return sorted[0]!;
  const i = (pct / 100) * (sorted.length - 1);
  const lower = Math.floor(i);
  const upper = Math.ceil(i);
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (i - lower);
}

function aggregate(type: MetricType, values: number[], name: string): (agg: string, pct?: number) => number {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = values.reduce((a, b) => a + b, 0);
  const elapsedS = Math.max(1e-3, (Date.now() - context.startedAt) / 1000);
  return (agg, pct) => {
    const allowed: Record<MetricType, string[]> = {
      counter: ['count', 'rate'],
      gauge: ['value'],
      rate: ['rate'],
      trend: ['avg', 'min', 'max', 'med', 'p'],
    };
    if (!allowed[type].includes(agg)) throw new Error(`threshold on ${name}: "${agg}" does not apply to a ${type} metric`);
    switch (agg) {
      case 'count':
        return sum;
      case 'rate':
        return type === 'rate' ? values.filter((v) => v !== 0).length / values.length : sum / elapsedS;
      case 'value':
        return values[values.length - 1]!;
      case 'avg':
        return sum / values.length;
      case 'min':
        return sorted[0]!;
      case 'max':
        return sorted[sorted.length - 1]!;
      case 'med':
        return percentile(sorted, 50);
      default:
        return percentile(sorted, pct ?? 0);
    }
  };
}

const THRESHOLD_KEY = /^([a-zA-Z_][a-zA-Z0-9_]*)(?:\{(.*)\})?$/;
const THRESHOLD_EXPRESSION = /^\s*(count|rate|value|avg|min|max|med|p\((\d+(?:\.\d+)?)\))\s*(<=|>=|===|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$/;

function compare(actual: number, op: string, expected: number): boolean {
  switch (op) {
    case '<':
      return actual < expected;
    case '<=':
      return actual <= expected;
    case '>':
      return actual > expected;
    case '>=':
      return actual >= expected;
    case '!=':
      return actual !== expected;
    default:
      return actual === expected;
  }
}

/** Parses every threshold up front, as k6 does before starting (a typo is an error, not a pass). */
function parseThresholds(thresholds: unknown): Array<{ key: string; metric: string; filter: Tags; expression: string; agg: string; pct?: number; op: string; value: number }> {
  if (thresholds === undefined) return [];
  if (typeof thresholds !== 'object' || thresholds === null) throw new Error('options.thresholds must be an object');
  const parsed = [];
  for (const [key, list] of Object.entries(thresholds)) {
    const keyMatch = THRESHOLD_KEY.exec(key);
    if (!keyMatch) throw new Error(`invalid threshold key "${key}"`);
    const metric = keyMatch[1]!;
    if (!registry.has(metric)) throw new Error(`threshold on "${key}": no metric named ${metric}`);
    const filter: Tags = {};
    for (const part of (keyMatch[2] ?? '').split(',').filter((p) => p.trim() !== '')) {
      const colon = part.indexOf(':');
      if (colon < 0) throw new Error(`invalid tag filter "${part}" in threshold "${key}"`);
      filter[part.slice(0, colon).trim()] = part.slice(colon + 1).trim();
    }
    if (!Array.isArray(list)) throw new Error(`thresholds["${key}"] must be an array`);
    for (const entry of list as unknown[]) {
      const expression = typeof entry === 'string' ? entry : (entry as { threshold?: unknown })?.threshold;
      if (typeof expression !== 'string') throw new Error(`thresholds["${key}"] has an entry without a threshold expression`);
      const m = THRESHOLD_EXPRESSION.exec(expression);
      if (!m) throw new Error(`invalid threshold expression "${expression}" on "${key}"`);
      const agg = m[2] !== undefined ? 'p' : m[1]!;
      const type = registry.get(metric)!.type;
      aggregate(type, [0], key)(agg, m[2] !== undefined ? Number(m[2]) : undefined);
      parsed.push({ key, metric, filter, expression, agg, ...(m[2] !== undefined ? { pct: Number(m[2]) } : {}), op: m[3]!, value: Number(m[4]) });
    }
  }
  return parsed;
}

function evaluateThresholds(parsed: ReturnType<typeof parseThresholds>): ThresholdResult[] {
  return parsed.map((t) => {
    const metric = registry.get(t.metric)!;
    const values = metric.samples.filter((s) => Object.entries(t.filter).every(([k, v]) => s.tags[k] === v)).map((s) => s.value);
    if (values.length === 0) return { metric: t.key, expression: t.expression, ok: false, actual: null, reason: 'no samples' };
    const actual = aggregate(metric.type, values, t.key)(t.agg, t.pct);
    return { metric: t.key, expression: t.expression, ok: compare(actual, t.op, t.value), actual };
  });
}

function summarise(): Record<string, MetricSummary> {
  const out: Record<string, MetricSummary> = {};
  for (const [name, metric] of registry) {
    const values = metric.samples.map((s) => s.value);
    if (values.length === 0) continue;
    const sorted = [...values].sort((a, b) => a - b);
    const sum = values.reduce((a, b) => a + b, 0);
    const value =
      metric.type === 'counter' ? sum : metric.type === 'gauge' ? values[values.length - 1]! : metric.type === 'rate' ? values.filter((v) => v !== 0).length / values.length : sum / values.length;
    out[name] = { type: metric.type, samples: values.length, value, min: sorted[0]!, max: sorted[sorted.length - 1]!, p95: percentile(sorted, 95) };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// k6
// ---------------------------------------------------------------------------------------------------

const checkResults = new Map<string, CheckResult>();

function check<T>(value: T, sets: Record<string, (v: T) => unknown>, tags?: Tags): boolean {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    const ok = Boolean(typeof fn === 'function' ? fn(value) : fn);
    addSample('checks', ok ? 1 : 0, { check: name, ...(tags ?? {}) });
    const key = `${context.scenario}\u0000${groupPath()}\u0000${name}`;
    const entry = checkResults.get(key) ?? { name, group: groupPath(), scenario: context.scenario, passes: 0, fails: 0 };
    if (ok) entry.passes++;
    else entry.fails++;
    checkResults.set(key, entry);
    all &&= ok;
  }
  return all;
}

function group<T>(name: string, fn: () => T): T {
  const started = Date.now();
  context.groups.push(name);
  try {
    const result = fn();
    if (result instanceof Promise) throw new Error(`group "${name}": k6 does not support async functions in group()`);
    return result;
  } finally {
    addSample('group_duration', Date.now() - started);
    context.groups.pop();
  }
}

function sleep(seconds: number): void {
  blockFor(Number(seconds) * 1000);
}

function fail(message?: string): never {
  throw new Error(message ?? 'fail() called');
}

// ---------------------------------------------------------------------------------------------------
// k6/crypto and k6/encoding
// ---------------------------------------------------------------------------------------------------

type Bytes = string | ArrayBuffer;

function toBuffer(input: Bytes | ArrayBufferView): Buffer {
  if (typeof input === 'string') return Buffer.from(input, 'utf8');
  if (input instanceof ArrayBuffer) return Buffer.from(input);
  if (ArrayBuffer.isView(input)) return Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  throw new TypeError(`expected a string or an ArrayBuffer, got ${inspect(input)}`);
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function encodeDigest(digest: Buffer, encoding: string): string | ArrayBuffer {
  switch (encoding) {
    case 'hex':
      return digest.toString('hex');
    case 'base64':
      return digest.toString('base64');
    case 'base64url':
      // Go's base64.URLEncoding: URL alphabet, padded.
      return digest.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
    case 'base64rawurl':
      return digest.toString('base64url');
    case 'binary':
      return toArrayBuffer(digest);
    default:
      throw new Error(`unsupported output encoding "${encoding}"`);
  }
}

const HASHES: Record<string, string> = {
  md5: 'md5',
  sha1: 'sha1',
  sha256: 'sha256',
  sha384: 'sha384',
  sha512: 'sha512',
  sha512_224: 'sha512-224',
  sha512_256: 'sha512-256',
  ripemd160: 'ripemd160',
};

function nodeAlgorithm(algorithm: string): string {
  const name = HASHES[algorithm];
  if (!name) throw new Error(`unsupported hash algorithm "${algorithm}"`);
  return name;
}

const crypto = {
  hmac(algorithm: string, secret: Bytes, input: Bytes, encoding: string) {
    return encodeDigest(createHmac(nodeAlgorithm(algorithm), toBuffer(secret)).update(toBuffer(input)).digest(), encoding);
  },
  randomBytes(size: number): ArrayBuffer {
    return toArrayBuffer(nodeRandomBytes(size));
  },
  ...Object.fromEntries(
    Object.keys(HASHES).map((name) => [name, (input: Bytes, encoding: string) => encodeDigest(createHash(nodeAlgorithm(name)).update(toBuffer(input)).digest(), encoding)]),
  ),
};

function base64Variant(variant: string | undefined): { url: boolean; pad: boolean } {
  switch (variant ?? 'std') {
    case 'std':
      return { url: false, pad: true };
    case 'rawstd':
      return { url: false, pad: false };
    case 'url':
      return { url: true, pad: true };
    case 'rawurl':
      return { url: true, pad: false };
    default:
      throw new Error(`unsupported base64 variant "${variant}"`);
  }
}

const encoding = {
  b64encode(input: Bytes, variant?: string): string {
    const { url, pad } = base64Variant(variant);
    let text = toBuffer(input).toString('base64');
    if (url) text = text.replace(/\+/g, '-').replace(/\//g, '_');
    if (!pad) text = text.replace(/=+$/, '');
    return text;
  },
  b64decode(input: string, variant?: string, format?: string): ArrayBuffer | string {
    const { url, pad } = base64Variant(variant);
    const alphabet = url ? /^[A-Za-z0-9_-]*={0,2}$/ : /^[A-Za-z0-9+/]*={0,2}$/;
    if (!alphabet.test(input) || (pad ? input.length % 4 !== 0 : input.includes('='))) {
      throw new Error(`b64decode: not ${variant ?? 'std'} base64`);
    }
    const bytes = Buffer.from(input, url ? 'base64url' : 'base64');
    return format === 's' ? bytes.toString('utf8') : toArrayBuffer(bytes);
  },
};

// ---------------------------------------------------------------------------------------------------
// k6/http
// ---------------------------------------------------------------------------------------------------

interface ExpectedStatuses {
  readonly k6ExpectedStatuses: (status: number) => boolean;
}

let defaultResponseCallback: ExpectedStatuses | null = null;

function expectedStatuses(...items: Array<number | { min: number; max: number }>): ExpectedStatuses {
  return {
    k6ExpectedStatuses: (status) => items.some((item) => (typeof item === 'number' ? status === item : status >= item.min && status <= item.max)),
  };
}

/** Go's canonical header key, as k6 exposes response headers: content-range → Content-Range. */
function canonicalHeader(name: string): string {
  return name
    .split('-')
    .map((part) => (part.length === 0 ? part : part[0]!.toUpperCase() + part.slice(1).toLowerCase()))
    .join('-');
}

function selectJson(value: unknown, selector: string | undefined): unknown {
  if (selector === undefined) return value;
  let current = value;
  for (const part of selector.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part.replace(/^#/, '')];
  }
  return current;
}

interface K6Params {
  headers?: Record<string, string>;
  tags?: Tags;
  responseType?: 'text' | 'binary' | 'none';
  responseCallback?: ExpectedStatuses;
  timeout?: string | number;
  redirects?: number;
}

function durationMs(value: string | number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value);
  if (!m) throw new Error(`invalid duration "${value}"`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

let nextId = 1;

function request(method: string, url: string, body?: unknown, params?: K6Params | null) {
  if (initContext) throw new Error('http requests can only be made in VU code');
  const p = params ?? {};
  const headers: Record<string, string> = { 'User-Agent': 'k6-harness (callvault test/load)', ...(p.headers ?? {}) };
  let payload: string | ArrayBuffer | null = null;
  if (typeof body === 'string' || body instanceof ArrayBuffer) payload = body;
  else if (body !== null && body !== undefined && typeof body === 'object') {
    payload = new URLSearchParams(Object.entries(body as Record<string, string>)).toString();
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/x-www-form-urlencoded';
  }
  const id = nextId++;
  const timeoutMs = durationMs(p.timeout, 60_000);
  post({ type: 'http', id, method: method.toUpperCase(), url, headers, body: payload, timeoutMs, maxRedirects: p.redirects ?? 10 });
  const answer = take((m): m is HttpResponseMessage => m.type === 'http.response' && m.id === id, Date.now() + timeoutMs + 5_000);
  if (!answer) throw new Error(`http ${method} ${url}: the harness host did not answer`);
  const callback = p.responseCallback ?? defaultResponseCallback;
  const expected = answer.status !== 0 && (callback ? callback.k6ExpectedStatuses(answer.status) : answer.status >= 200 && answer.status < 400);
  const name = p.tags?.['name'] ?? url;
  const tags: Tags = {
    method: method.toUpperCase(),
    url,
    name,
    status: String(answer.status),
    expected_response: String(expected),
    ...(p.tags ?? {}),
  };
  addSample('http_reqs', 1, tags);
  addSample('http_req_duration', answer.durationMs, tags);
  addSample('http_req_failed', expected ? 0 : 1, tags);
  addSample('data_received', answer.body.byteLength, tags);
  requests.push({ scenario: context.scenario, method: method.toUpperCase(), url, name, status: answer.status, expected });

  const bytes = Buffer.from(answer.body);
  const responseType = p.responseType ?? 'text';
  const responseHeaders = Object.fromEntries(Object.entries(answer.headers).map(([k, v]) => [canonicalHeader(k), v]));
  const responseBody = responseType === 'binary' ? toArrayBuffer(bytes) : responseType === 'none' ? null : bytes.toString('utf8');
  return {
    status: answer.status,
    status_text: answer.statusText,
    url: answer.url,
    headers: responseHeaders,
    body: responseBody,
    error: answer.error,
    error_code: answer.error ? 1000 : 0,
    timings: { duration: answer.durationMs, waiting: answer.durationMs, blocked: 0, connecting: 0, tls_handshaking: 0, sending: 0, receiving: 0 },
    request: { method: method.toUpperCase(), url, headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])), body: typeof payload === 'string' ? payload : '' },
    json(selector?: string): unknown {
      if (typeof responseBody !== 'string') throw new Error('json(): the response body is not text');
      return selectJson(JSON.parse(responseBody), selector);
    },
  };
}

const http = {
  request,
  get: (url: string, params?: K6Params | null) => request('GET', url, null, params),
  head: (url: string, params?: K6Params | null) => request('HEAD', url, null, params),
  post: (url: string, body?: unknown, params?: K6Params | null) => request('POST', url, body, params),
  put: (url: string, body?: unknown, params?: K6Params | null) => request('PUT', url, body, params),
  patch: (url: string, body?: unknown, params?: K6Params | null) => request('PATCH', url, body, params),
  del: (url: string, body?: unknown, params?: K6Params | null) => request('DELETE', url, body, params),
  options: (url: string, body?: unknown, params?: K6Params | null) => request('OPTIONS', url, body, params),
  expectedStatuses,
  setResponseCallback(callback: ExpectedStatuses | null): void {
    defaultResponseCallback = callback;
  },
};

// ---------------------------------------------------------------------------------------------------
// Socket records
// ---------------------------------------------------------------------------------------------------

function newRecord(module: WsRecord['module'], url: string, headers: Record<string, string>): WsRecord {
  const record: WsRecord = {
    scenario: context.scenario,
    module,
    url,
    headers,
    status: 0,
    closeCode: null,
    closedBy: null,
    textSent: 0,
    binarySent: 0,
    binaryBytesSent: 0,
    firstTexts: [],
    lastTexts: [],
  };
  sockets.push(record);
  return record;
}

function recordSend(record: WsRecord, data: string | ArrayBuffer | ArrayBufferView): void {
  if (typeof data === 'string') {
    record.textSent++;
    if (record.firstTexts.length < 5) record.firstTexts.push(data);
    record.lastTexts.push(data);
    if (record.lastTexts.length > 5) record.lastTexts.shift();
  } else {
    record.binarySent++;
    record.binaryBytesSent += data.byteLength;
  }
}

// ---------------------------------------------------------------------------------------------------
// k6/ws: ws.connect blocks until the socket is closed and runs the socket's handlers and timers
// ---------------------------------------------------------------------------------------------------

let nextSid = 1;

type WsHandler = (...args: unknown[]) => void;

function wsConnect(url: string, paramsOrCallback: unknown, maybeCallback?: unknown) {
  if (initContext) throw new Error('using websockets in the init context is not supported');
  const callback = (maybeCallback ?? paramsOrCallback) as (socket: unknown) => void;
  const params = (maybeCallback === undefined ? {} : (paramsOrCallback ?? {})) as { headers?: Record<string, string>; tags?: Tags };
  if (typeof callback !== 'function') throw new Error('last argument to ws.connect must be a function');
  const sid = nextSid++;
  const tags: Tags = { url, ...(params.tags ?? {}) };
  const headers = params.headers ?? {};
  const record = newRecord('k6/ws', url, headers);
  const started = Date.now();
  post({ type: 'ws.open', sid, url, headers });
  type Ev<E extends WsEvent['event']> = Extract<WsEvent, { event: E }>;
  const first = take(
    (m): m is Ev<'open'> | Ev<'refused'> | Ev<'connect-error'> =>
      m.type === 'ws.event' && m.sid === sid && (m.event === 'open' || m.event === 'refused' || m.event === 'connect-error'),
    started + 60_000,
  );
  addSample('ws_sessions', 1, tags);
  addSample('ws_connecting', Date.now() - started, tags);
  if (!first) throw new Error(`ws.connect ${url}: no answer to the upgrade within 60 s`);
  if (first.event !== 'open') {
    // k6 (throw: false) reports the failed handshake in the response instead of throwing.
    record.status = first.event === 'refused' ? first.status : 0;
    dropSocketMessages(sid);
    return {
      url,
      status: record.status,
      headers: first.event === 'refused' ? first.headers : {},
      body: first.event === 'refused' ? first.body : '',
      error: first.event === 'refused' ? `websocket: bad handshake (HTTP ${first.status})` : first.error,
    };
  }
  record.status = first.status;

  const handlers = new Map<string, WsHandler[]>();
  const timers: Array<{ at: number; fn: () => void; every?: number }> = [];
  let done = false;
  const fire = (event: string, ...args: unknown[]): void => {
    for (const handler of handlers.get(event) ?? []) handler(...args);
  };
  const closeConnection = (code: number, by: 'server' | 'client'): void => {
    if (done) return;
    done = true;
    record.closeCode = code;
    record.closedBy = by;
    post({ type: 'ws.close', sid, code });
    fire('close', code);
  };
  const socket = {
    on(event: string, handler: WsHandler): void {
      if (typeof handler === 'function') handlers.set(event, [...(handlers.get(event) ?? []), handler]);
    },
    send(data: string): void {
      if (done) return;
      const text = String(data);
      recordSend(record, text);
      post({ type: 'ws.send', sid, data: text });
      addSample('ws_msgs_sent', 1, tags);
    },
    sendBinary(data: ArrayBuffer): void {
      if (done) return;
      if (!(data instanceof ArrayBuffer)) throw new TypeError('sendBinary takes an ArrayBuffer');
      recordSend(record, data);
      post({ type: 'ws.send', sid, data: data.slice(0) });
      addSample('ws_msgs_sent', 1, tags);
    },
    ping(): void {
      if (!done) post({ type: 'ws.ping', sid });
    },
    close(code?: number): void {
      // k6's default close code is 1001 (going away).
      closeConnection(code === undefined ? 1001 : Number(code), 'client');
    },
    setTimeout(fn: () => void, ms: number): void {
      if (!(ms > 0)) throw new Error(`setTimeout requires a >0 timeout parameter, received ${ms}`);
      timers.push({ at: Date.now() + ms, fn });
    },
    setInterval(fn: () => void, ms: number): void {
      if (!(ms > 0)) throw new Error(`setInterval requires a >0 timeout parameter, received ${ms}`);
      timers.push({ at: Date.now() + ms, fn, every: ms });
    },
  };

  try {
    callback(socket);
    fire('open');
    while (!done) {
      const nextTimer = timers.reduce((min, t) => Math.min(min, t.at), Infinity);
      const event = take((m): m is WsEvent => m.type === 'ws.event' && m.sid === sid, nextTimer);
      if (event) {
        switch (event.event) {
          case 'message':
            addSample('ws_msgs_received', 1, tags);
            fire('message', event.data);
            break;
          case 'binaryMessage':
            addSample('ws_msgs_received', 1, tags);
            fire('binaryMessage', event.data);
            break;
          case 'ping':
          case 'pong':
            fire(event.event);
            break;
          case 'error':
            fire('error', { error: () => event.error });
            break;
          case 'close':
            // Like gorilla/websocket: a close other than 1000/1001 is also reported as an error first.
            if (event.code !== 1000 && event.code !== 1001) {
              const error = `websocket: close ${event.code}${event.reason ? ` ${event.reason}` : ''}`;
              fire('error', { error: () => error });
            }
            closeConnection(event.code, 'server');
            break;
          default:
            break;
        }
        continue;
      }
      const now = Date.now();
      for (const timer of timers.filter((t) => t.at <= now)) {
        if (done) break;
        if (timer.every === undefined) timers.splice(timers.indexOf(timer), 1);
        // A ticker drops the ticks it missed, like Go's time.Ticker.
        else timer.at += Math.max(1, Math.ceil((now - timer.at + 1) / timer.every)) * timer.every;
        timer.fn();
      }
    }
  } catch (err) {
    closeConnection(1001, 'client');
    throw err;
  } finally {
    addSample('ws_session_duration', Date.now() - started, tags);
    dropSocketMessages(sid);
  }
  return { url, status: record.status, headers: first.headers, body: '', error: '' };
}

function dropSocketMessages(sid: number): void {
  for (let i = inbox.length - 1; i >= 0; i--) {
    const m = inbox[i]!;
    if (m.type === 'ws.event' && m.sid === sid) inbox.splice(i, 1);
  }
}

// ---------------------------------------------------------------------------------------------------
// k6/timers and k6/websockets: on the worker's own event loop (k6's VU event loop)
// ---------------------------------------------------------------------------------------------------

const pendingTimers = new Map<number, NodeJS.Timeout>();
let nextTimerId = 1;

/** Runs a callback from the event loop; an exception fails the iteration, as it does in k6. */
function guarded(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    asyncErrors.push(describeError(err));
  }
}

const timers = {
  setTimeout(fn: (...args: unknown[]) => void, delay: number, ...args: unknown[]): number {
    const id = nextTimerId++;
    pendingTimers.set(
      id,
      setTimeout(() => {
        pendingTimers.delete(id);
        guarded(() => fn(...args));
      }, delay),
    );
    return id;
  },
  clearTimeout(id: number): void {
    clearTimeout(pendingTimers.get(id));
    pendingTimers.delete(id);
  },
  setInterval(fn: (...args: unknown[]) => void, delay: number, ...args: unknown[]): number {
    const id = nextTimerId++;
    pendingTimers.set(id, setInterval(() => guarded(() => fn(...args)), delay));
    return id;
  },
  clearInterval(id: number): void {
    clearInterval(pendingTimers.get(id));
    pendingTimers.delete(id);
  },
};

const openWebSockets = new Set<K6WebSocket>();

interface K6Event {
  type: string;
  timestamp: number;
  [key: string]: unknown;
}

class K6WebSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;

  readonly url: string;
  readyState = 0;
  bufferedAmount = 0;
  binaryType = '';
  onopen: ((e: K6Event) => void) | null = null;
  onmessage: ((e: K6Event) => void) | null = null;
  onerror: ((e: K6Event) => void) | null = null;
  onclose: ((e: K6Event) => void) | null = null;
  onping: ((e: K6Event) => void) | null = null;
  onpong: ((e: K6Event) => void) | null = null;
  readonly #listeners = new Map<string, Array<(e: K6Event) => void>>();
  readonly #socket: NodeWebSocket;
  readonly #record: WsRecord;
  readonly #tags: Tags;
  readonly #scenario: string;

  constructor(url: string, protocols?: string | string[] | null, params?: { headers?: Record<string, string>; tags?: Tags; compression?: string } | null) {
    if (initContext) throw new Error('using websockets in the init context is not supported');
    const parsed = new URL(String(url));
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new Error(`WebSocket requires url with scheme ws or wss, but got "${parsed.protocol}"`);
    this.url = String(url);
    this.#tags = { url: this.url, ...(params?.tags ?? {}) };
    this.#scenario = context.scenario;
    const headers = params?.headers ?? {};
    this.#record = newRecord('k6/websockets', this.url, headers);
    const started = Date.now();
    this.#socket = new NodeWebSocket(this.url, protocols ?? undefined, { headers, perMessageDeflate: params?.compression === 'deflate' });
    openWebSockets.add(this);
    let opened = false;
    const connected = (): void => {
      this.#sample('ws_sessions', 1);
      this.#sample('ws_connecting', Date.now() - started);
    };
    this.#socket.on('upgrade', (res) => {
      this.#record.status = res.statusCode ?? 0;
    });
    this.#socket.on('open', () => {
      opened = true;
      connected();
      this.readyState = 1;
      this.#dispatch('open', {});
    });
    this.#socket.on('unexpected-response', (_req, res) => {
      this.#record.status = res.statusCode ?? 0;
      connected();
      res.resume();
      this.#dispatch('error', { error: `websocket: bad handshake (HTTP ${res.statusCode})` });
      this.#socket.terminate();
    });
    this.#socket.on('message', (data, isBinary) => {
      if (this.readyState !== 1) return;
      this.#sample('ws_msgs_received', 1);
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary && this.binaryType === '') this.binaryType = 'arraybuffer';
      this.#dispatch('message', { data: isBinary ? toArrayBuffer(bytes) : bytes.toString('utf8') });
    });
    this.#socket.on('ping', () => this.#dispatch('ping', {}));
    this.#socket.on('pong', () => this.#dispatch('pong', {}));
    this.#socket.on('error', (err) => {
      if (!opened) connected();
      this.#dispatch('error', { error: err.message });
    });
    this.#socket.on('close', (code, reason) => {
      this.readyState = 3;
      openWebSockets.delete(this);
      if (this.#record.closeCode === null) {
        this.#record.closeCode = code;
        this.#record.closedBy = this.#record.closedBy ?? 'server';
      }
      if (opened) this.#sample('ws_session_duration', Date.now() - started);
      this.#dispatch('close', { code, reason: reason.toString('utf8') });
    });
  }

  #sample(name: string, value: number): void {
    const scenario = context.scenario;
    context.scenario = this.#scenario;
    try {
      addSample(name, value, this.#tags);
    } finally {
      context.scenario = scenario;
    }
  }

  #dispatch(type: string, fields: Record<string, unknown>): void {
    const event: K6Event = { type, timestamp: Date.now(), ...fields };
    const on = this[`on${type}` as 'onopen'];
    if (typeof on === 'function') guarded(() => on.call(this, event));
    for (const listener of this.#listeners.get(type) ?? []) guarded(() => listener.call(this, event));
  }

  addEventListener(type: string, listener: (e: K6Event) => void): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener]);
  }

  send(data: string | ArrayBuffer | ArrayBufferView): void {
    if (this.readyState !== 1) throw new Error(`InvalidStateError: send on a WebSocket that is not open (readyState ${this.readyState})`);
    recordSend(this.#record, data);
    this.#socket.send(typeof data === 'string' ? data : toBuffer(data), { binary: typeof data !== 'string' });
    this.#sample('ws_msgs_sent', 1);
  }

  ping(): void {
    this.#socket.ping();
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    this.#record.closeCode = code ?? 1000;
    this.#record.closedBy = 'client';
    this.#socket.close(code ?? 1000, reason);
  }
}

// ---------------------------------------------------------------------------------------------------
// k6/execution
// ---------------------------------------------------------------------------------------------------

let currentOptions: Record<string, unknown> = {};

const execution = {
  get scenario() {
    return {
      name: context.scenario,
      executor: context.executor,
      startTime: context.startedAt,
      progress: 0,
      iterationInInstance: context.iterationInScenario,
      iterationInTest: context.iterationInTest,
    };
  },
  get vu() {
    return {
      idInInstance: context.vu,
      idInTest: context.vu,
      iterationInInstance: context.iterationInScenario,
      iterationInScenario: context.iterationInScenario,
      tags: {},
      metrics: { tags: {}, metadata: {} },
    };
  },
  get instance() {
    return { iterationsInterrupted: 0, iterationsCompleted: 0, vusActive: 1, vusInitialized: 1, currentTestRunDuration: Date.now() - context.startedAt };
  },
  test: {
    abort(message?: string): never {
      throw new Error(`test aborted: ${message ?? ''}`);
    },
    fail(message?: string): void {
      asyncErrors.push(`test marked failed: ${message ?? ''}`);
    },
    get options() {
      return currentOptions;
    },
  },
};

// ---------------------------------------------------------------------------------------------------
// Modules, as the harness's shims re-export them
// ---------------------------------------------------------------------------------------------------

export const modules: Record<string, Record<string, unknown>> = {
  k6: { check, group, sleep, fail, randomSeed: () => undefined },
  'k6/http': http,
  'k6/ws': { connect: wsConnect },
  'k6/websockets': { WebSocket: K6WebSocket },
  'k6/timers': timers,
  'k6/crypto': crypto,
  'k6/encoding': encoding,
  'k6/metrics': { Counter, Gauge, Rate, Trend },
  'k6/execution': execution,
};

// ---------------------------------------------------------------------------------------------------
// The VU: init, setup, one iteration per scenario, teardown, thresholds
// ---------------------------------------------------------------------------------------------------

/** What each executor cannot do without (k6 refuses to start otherwise); the rest has defaults. */
const EXECUTOR_FIELDS: Record<string, string[]> = {
  'shared-iterations': [],
  'per-vu-iterations': [],
  'constant-vus': ['duration'],
  'ramping-vus': ['stages'],
  'constant-arrival-rate': ['rate', 'duration', 'preAllocatedVUs'],
  'ramping-arrival-rate': ['stages', 'preAllocatedVUs'],
};

function scenariosOf(options: Record<string, unknown>): Array<[string, Record<string, unknown>]> {
  const scenarios = options['scenarios'];
  if (scenarios === undefined) return [['default', { executor: 'per-vu-iterations', vus: 1, iterations: 1 }]];
  if (typeof scenarios !== 'object' || scenarios === null) throw new Error('options.scenarios must be an object');
  const entries = Object.entries(scenarios as Record<string, Record<string, unknown>>);
  if (entries.length === 0) throw new Error('options.scenarios is empty');
  for (const [name, scenario] of entries) {
    const executor = String(scenario['executor']);
    const fields = EXECUTOR_FIELDS[executor];
    if (!fields) throw new Error(`scenario ${name}: unknown executor "${executor}"`);
    for (const field of fields) {
      if (scenario[field] === undefined) throw new Error(`scenario ${name}: executor ${executor} needs "${field}"`);
    }
    for (const field of ['duration', 'gracefulStop', 'maxDuration', 'startTime', 'gracefulRampDown']) {
      if (scenario[field] !== undefined) durationMs(scenario[field] as string, 0);
    }
  }
  return entries;
}

function setGlobals(env: Record<string, string>, vu: number, iteration: number): void {
  const g = globalThis as Record<string, unknown>;
  g['__ENV'] = { ...env };
  g['__VU'] = vu;
  g['__ITER'] = iteration;
}

async function drainEventLoop(what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (openWebSockets.size > 0 || pendingTimers.size > 0) {
    if (Date.now() > deadline) throw new Error(`${what}: ${openWebSockets.size} websockets and ${pendingTimers.size} timers still pending after 120 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function runPhase(what: string, fn: () => unknown, errors: string[]): Promise<{ ok: boolean; value: unknown }> {
  asyncErrors.length = 0;
  let value: unknown;
  let ok = true;
  try {
    value = await fn();
    await drainEventLoop(what);
  } catch (err) {
    ok = false;
    errors.push(`${what}: ${describeError(err)}`);
  }
  for (const message of asyncErrors.splice(0)) {
    ok = false;
    errors.push(`${what}: ${message}`);
  }
  return { ok, value };
}

function captureConsole(): void {
  const write = (level: string) => (...args: unknown[]) => {
    logs.push(`${level} [${context.scenario}] ${args.map((a) => (typeof a === 'string' ? a : inspect(a))).join(' ')}`);
  };
  const c = console as unknown as Record<string, unknown>;
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) c[level] = write(level);
}

async function main(data: VuWorkerData): Promise<void> {
  link = { port: data.port, signal: new Int32Array(data.signal) };
  captureConsole();
  const errors: string[] = [];
  setGlobals(data.env, 1, 0);
  const script = (await import(data.scriptUrl)) as Record<string, unknown>;
  initContext = false;
  const options = (script['options'] ?? {}) as Record<string, unknown>;
  currentOptions = options;
  const thresholds = parseThresholds(options['thresholds']);
  const scenarios = scenariosOf(options);
  for (const [name, scenario] of scenarios) {
    const exec = String(scenario['exec'] ?? 'default');
    if (typeof script[exec] !== 'function') throw new Error(`scenario ${name}: the script exports no function "${exec}"`);
  }

  let setupData: unknown = undefined;
  if (typeof script['setup'] === 'function') {
    context.scenario = 'setup';
    setGlobals(data.env, 0, 0);
    const setup = script['setup'] as () => unknown;
    const { ok, value } = await runPhase('setup', () => setup(), errors);
    if (!ok) throw new Error(errors.join('\n'));
    // k6 hands setup's result to every VU as JSON.
    setupData = value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  const ran: string[] = [];
  for (const [name, scenario] of scenarios) {
    const exec = String(scenario['exec'] ?? 'default');
    const fn = script[exec] as (data: unknown) => unknown;
    context.scenario = name;
    context.executor = String(scenario['executor']);
    context.vu = ran.length + 1;
    context.iterationInScenario = 0;
    context.iterationInTest = 0;
    setGlobals({ ...data.env, ...((scenario['env'] as Record<string, string> | undefined) ?? {}) }, context.vu, 0);
    const started = Date.now();
    const { ok } = await runPhase(`scenario ${name}`, () => fn(setupData), errors);
    addSample('iteration_duration', Date.now() - started);
    if (ok) addSample('iterations', 1);
    ran.push(name);
  }

  if (typeof script['teardown'] === 'function') {
    context.scenario = 'teardown';
    setGlobals(data.env, 0, 0);
    const teardown = script['teardown'] as (d: unknown) => unknown;
    await runPhase('teardown', () => teardown(setupData), errors);
  }

  const result: K6RunResult = {
    scenarios: ran,
    thresholds: evaluateThresholds(thresholds),
    checks: [...checkResults.values()],
    metrics: summarise(),
    requests,
    sockets,
    errors,
    logs,
    setupData,
  };
  post({ type: 'done', result });
}

const started = workerData as VuWorkerData | undefined;
if (started?.k6Harness === true) {
  main(started).catch((err: unknown) => {
    const error = describeError(err);
    if (link) post({ type: 'fatal', error, logs });
    else throw err;
  });
}
