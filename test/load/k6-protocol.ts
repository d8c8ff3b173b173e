/**
 * Messages between the harness (host thread: does the network I/O with fetch and ws) and the VU worker
 * (runs the k6 script; k6's blocking calls wait on a SharedArrayBuffer for the host's answer). Types only.
 */

export interface VuWorkerData {
  k6Harness: true;
  port: import('node:worker_threads').MessagePort;
  /** Int32 counter the host bumps (and notifies) after every message it posts. */
  signal: SharedArrayBuffer;
  scriptUrl: string;
  env: Record<string, string>;
}

// ---- worker → host ----

export interface HttpRequestMessage {
  type: 'http';
  id: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | ArrayBuffer | null;
  timeoutMs: number;
  maxRedirects: number;
}

export type WsCommand =
  | { type: 'ws.open'; sid: number; url: string; headers: Record<string, string> }
  | { type: 'ws.send'; sid: number; data: string | ArrayBuffer }
  | { type: 'ws.ping'; sid: number }
  | { type: 'ws.close'; sid: number; code: number };

export interface DoneMessage {
  type: 'done';
  result: K6RunResult;
}

export interface FatalMessage {
  type: 'fatal';
  error: string;
  logs: string[];
}

export type WorkerMessage = HttpRequestMessage | WsCommand | DoneMessage | FatalMessage;

// ---- host → worker ----

export interface HttpResponseMessage {
  type: 'http.response';
  id: number;
  status: number;
  statusText: string;
  url: string;
  headers: Record<string, string>;
  body: ArrayBuffer;
  error: string;
  durationMs: number;
}

export type WsEvent =
  | { type: 'ws.event'; sid: number; event: 'open'; status: number; headers: Record<string, string> }
  | { type: 'ws.event'; sid: number; event: 'refused'; status: number; headers: Record<string, string>; body: string }
  | { type: 'ws.event'; sid: number; event: 'connect-error'; error: string }
  | { type: 'ws.event'; sid: number; event: 'message'; data: string }
  | { type: 'ws.event'; sid: number; event: 'binaryMessage'; data: ArrayBuffer }
  | { type: 'ws.event'; sid: number; event: 'ping' | 'pong' }
  | { type: 'ws.event'; sid: number; event: 'error'; error: string }
  | { type: 'ws.event'; sid: number; event: 'close'; code: number; reason: string };

export type HostMessage = HttpResponseMessage | WsEvent;

// ---- the outcome of a run ----

export interface ThresholdResult {
  /** The thresholds key, e.g. `http_req_duration{name:list}`. */
  metric: string;
  expression: string;
  ok: boolean;
  /** The aggregate the expression compared, when there were samples. */
  actual: number | null;
  reason?: string;
}

export interface CheckResult {
  name: string;
  group: string;
  scenario: string;
  passes: number;
  fails: number;
}

export interface MetricSummary {
  type: 'counter' | 'gauge' | 'rate' | 'trend';
  samples: number;
  /** counter: sum; gauge: last value; rate: fraction of non-zero samples; trend: average. */
  value: number;
  min: number;
  max: number;
  p95: number;
}

export interface HttpRecord {
  scenario: string;
  method: string;
  url: string;
  name: string;
  status: number;
  expected: boolean;
}

export interface WsRecord {
  scenario: string;
  module: 'k6/ws' | 'k6/websockets';
  url: string;
  headers: Record<string, string>;
  /** 101 when the upgrade was accepted, the refusal's status otherwise, 0 when nothing answered. */
  status: number;
  closeCode: number | null;
  closedBy: 'server' | 'client' | null;
  textSent: number;
  binarySent: number;
  binaryBytesSent: number;
  /** The first and last text messages sent (at most 5 each), as sent. */
  firstTexts: string[];
  lastTexts: string[];
}

export interface K6RunResult {
  /** Scenario names run, one iteration each, in order. */
  scenarios: string[];
  thresholds: ThresholdResult[];
  checks: CheckResult[];
  metrics: Record<string, MetricSummary>;
  requests: HttpRecord[];
  sockets: WsRecord[];
  /** Exceptions that ended setup, an iteration or teardown. */
  errors: string[];
  logs: string[];
  setupData: unknown;
}
