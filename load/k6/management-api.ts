/**
 * Management API load (docs/api.md): `browse` VUs list recordings, fetch one and read its media with Range
 * requests (206) through both media routes; `delete` deletes recordings one by one (204) and checks each is
 * gone (404). setup() first records the calls it works on, as short Twilio calls sent ahead of the clock
 * (within the gateway's MAX_AHEAD_OF_CLOCK_SECONDS), so the test owns every recording it deletes.
 *
 *   k6 run -e GATEWAY_URL=http://127.0.0.1:8080 -e API_KEY=… -e ACCOUNT_SID=AC… -e AUTH_TOKEN=… \
 *     -e VUS=20 -e DURATION=2m -e SEED_READ=10 -e SEED_DELETE=50 [-e PUBLIC_URL=https://rec.example.com] \
 *     load/k6/management-api.ts
 */
import { check, fail } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import type { Options } from 'k6/options';
import { authHeaders, jsonOf, recordingOf, recordingsOf, waitForFinishedRecording, type RecordingView } from './lib/api.ts';
import { callMs, env, httpBase, numberEnv, wsBase } from './lib/env.ts';
import { placeCall, randomSid, toneFramePayload } from './lib/twilio.ts';

const GATEWAY_URL = httpBase(env('GATEWAY_URL', 'http://127.0.0.1:8080'));
const PUBLIC_URL = httpBase(env('PUBLIC_URL', GATEWAY_URL));
const API_KEY = env('API_KEY');
const ACCOUNT_SID = env('ACCOUNT_SID');
const AUTH_TOKEN = env('AUTH_TOKEN');
const VUS = numberEnv('VUS', 5, { min: 1, integer: true });
const DURATION = env('DURATION', '1m');
const SEED_READ = numberEnv('SEED_READ', 5, { min: 1, integer: true });
const SEED_DELETE = numberEnv('SEED_DELETE', 10, { min: 0, integer: true });
const SEED_CALL_MS = callMs(numberEnv('SEED_CALL_SECONDS', 1, { min: 0.02 }));
/** How far ahead of the clock seed calls are sent; keep below the gateway's MAX_AHEAD_OF_CLOCK_SECONDS (10). */
const SEED_LEAD_MS = numberEnv('SEED_LEAD_SECONDS', 5, { min: 0 }) * 1000;

/** The canonical WAV header the gateway puts before the PCM. */
const WAV_HEADER_BYTES = 44;
const RANGE_BYTES = 1024;
const HEADERS = authHeaders(API_KEY);

export interface SeededRecording {
  recordingSid: string;
  callSid: string;
}

export interface SeedData {
  read: SeededRecording[];
  delete: SeededRecording[];
}

export const options: Options = {
  setupTimeout: `${60 + (SEED_READ + SEED_DELETE) * 10}s`,
  scenarios: {
    browse: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'browse' },
    ...(SEED_DELETE > 0
      ? { delete: { executor: 'shared-iterations', vus: 1, iterations: SEED_DELETE, maxDuration: DURATION, exec: 'deleteRecording' } }
      : {}),
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{name:list}': ['p(95)<500'],
    'http_req_duration{name:fetch}': ['p(95)<500'],
    'http_req_duration{name:media-range}': ['p(95)<1000'],
    ...(SEED_DELETE > 0 ? { 'http_req_duration{name:delete}': ['p(95)<2000'] } : {}),
  },
};

function seedRecording(index: number): SeededRecording {
  const callSid = randomSid('CA');
  const outcome = placeCall({
    url: `${wsBase(GATEWAY_URL)}/twilio/media`,
    signedUrl: `${wsBase(PUBLIC_URL)}/twilio/media`,
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    callSid,
    streamSid: randomSid('MZ'),
    durationMs: SEED_CALL_MS,
    leadMs: SEED_LEAD_MS,
    closeTimeoutMs: 30_000,
    payloads: { inbound: toneFramePayload(400, 0.4), outbound: toneFramePayload(1000, 0.4) },
    customParameters: {},
    tags: { name: 'seed-call' },
  });
  if (!(outcome.stopSent && outcome.closedBy === 'gateway' && outcome.closeCode === 1000)) {
    fail(`seed call ${index} (${callSid}) failed: status ${outcome.status}, close ${outcome.closeCode} by ${outcome.closedBy}, ${outcome.error ?? ''}`);
  }
  const recording = waitForFinishedRecording(GATEWAY_URL, API_KEY, callSid, 30);
  if (!recording || (recording.status !== 'completed' && recording.status !== 'uploading')) {
    fail(`seed call ${index} (${callSid}) has no finished recording: ${recording?.status ?? 'none'}`);
  }
  return { recordingSid: recording.recordingSid, callSid };
}

export function setup(): SeedData {
  const seeded: SeededRecording[] = [];
  for (let i = 0; i < SEED_READ + SEED_DELETE; i++) seeded.push(seedRecording(i));
  return { read: seeded.slice(0, SEED_READ), delete: seeded.slice(SEED_READ) };
}

/** `bytes a-b/size` of a Content-Range header. */
function contentRange(value: string | undefined): { first: number; last: number; size: number } | null {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value ?? '');
  if (!match) return null;
  return { first: Number(match[1]), last: Number(match[2]), size: Number(match[3]) };
}

function isWavStart(body: ArrayBuffer): boolean {
  const b = new Uint8Array(body);
  const tag = (at: number): string => String.fromCharCode(b[at] ?? 0, b[at + 1] ?? 0, b[at + 2] ?? 0, b[at + 3] ?? 0);
  return tag(0) === 'RIFF' && tag(8) === 'WAVE';
}

function byteLength(body: unknown): number {
  return body instanceof ArrayBuffer ? body.byteLength : -1;
}

export function browse(data: SeedData): void {
  const list = http.get(`${GATEWAY_URL}/api/call-recordings?limit=20&status=completed`, { headers: HEADERS, tags: { name: 'list' } });
  const recordings = recordingsOf(jsonOf(list));
  check(list, {
    'list: 200': (r) => r.status === 200,
    'list: recordings, newest first': () => recordings !== null && recordings.length > 0,
  });

  const target = data.read[(exec.vu.idInTest + exec.vu.iterationInScenario) % data.read.length];
  if (!target) fail('setup seeded no recording to read');
  const fetched = http.get(`${GATEWAY_URL}/api/call-recordings/${target.recordingSid}`, { headers: HEADERS, tags: { name: 'fetch' } });
  const recording: RecordingView | null = recordingOf(jsonOf(fetched));
  check(fetched, {
    'fetch: 200': (r) => r.status === 200,
    'fetch: the completed recording of the call': () => recording?.callSid === target.callSid && recording.status === 'completed',
    'fetch: its duration': () => recording?.durationMs === SEED_CALL_MS,
  });

  // The start of the WAV: the header and the first PCM.
  const head = http.get(`${GATEWAY_URL}/api/call-recordings/${target.recordingSid}/media`, {
    headers: { ...HEADERS, Range: `bytes=0-${RANGE_BYTES - 1}` },
    responseType: 'binary',
    tags: { name: 'media-range' },
  });
  const headRange = contentRange(head.headers['Content-Range']);
  check(head, {
    'media range: 206': (r) => r.status === 206,
    'media range: Content-Range of the bytes asked for': () => headRange?.first === 0 && headRange.last === RANGE_BYTES - 1,
    'media range: those bytes, a WAV header first': (r) => byteLength(r.body) === RANGE_BYTES && r.body instanceof ArrayBuffer && isWavStart(r.body),
  });

  // The last bytes through the call's route, as a player seeking to the end would ask.
  const size = headRange?.size ?? 0;
  const tail = http.get(`${GATEWAY_URL}/calls/${target.callSid}/recording`, {
    headers: { ...HEADERS, Range: `bytes=-${RANGE_BYTES}` },
    responseType: 'binary',
    tags: { name: 'media-range' },
  });
  const tailRange = contentRange(tail.headers['Content-Range']);
  check(tail, {
    'call recording range: 206': (r) => r.status === 206,
    'call recording range: the last bytes of the same WAV': (r) =>
      size > WAV_HEADER_BYTES && tailRange?.size === size && tailRange.last === size - 1 && byteLength(r.body) === RANGE_BYTES,
  });
}

export function deleteRecording(data: SeedData): void {
  const target = data.delete[exec.scenario.iterationInTest];
  if (!target) fail(`no seeded recording for delete iteration ${exec.scenario.iterationInTest}`);
  const deleted = http.del(`${GATEWAY_URL}/api/call-recordings/${target.recordingSid}`, null, { headers: HEADERS, tags: { name: 'delete' } });
  check(deleted, { 'delete: 204': (r) => r.status === 204 });

  const gone = { responseCallback: http.expectedStatuses(404) };
  const fetched = http.get(`${GATEWAY_URL}/api/call-recordings/${target.recordingSid}`, { ...gone, headers: HEADERS, tags: { name: 'fetch-deleted' } });
  const media = http.get(`${GATEWAY_URL}/calls/${target.callSid}/recording`, { ...gone, headers: HEADERS, tags: { name: 'media-of-deleted' } });
  check(null, {
    'deleted: the recording is gone (404)': () => fetched.status === 404,
    'deleted: the call has no recording left (404)': () => media.status === 404,
  });
}
