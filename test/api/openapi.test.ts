/**
 * The OpenAPI document served at /openapi.json against what the gateway really does: every route the
 * routers registered is documented and every documented operation is registered; every status a route
 * answered during this test is documented for it; and for the recording routes every documented status
 * is produced here. LiveKit is configured (pointing nowhere) so its routes are registered too.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { registeredRoutes } from '../../dist/api/index.js';
import { openApiDocument, openApiPath, openApiVerb, WEBSOCKET_EXTENSION, type OperationObject } from '../../dist/api/openapi.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { api, placeCall, recordingPath } from './support.js';

let t: TestGateway;
type Doc = { openapi: string; paths: Record<string, Record<string, OperationObject>> };
let doc: Doc;
let serverCall: string;
let clientCall: string;
let inProgressCall: string;
/** A key with only the control scope: neither read nor delete (403 on the recording routes). */
let controlOnlyKey: string;

beforeAll(async () => {
  t = await startTestGateway({
    livekit: { url: 'ws://127.0.0.1:9', apiKey: 'APIopenapitest', apiSecret: randomBytes(24).toString('hex'), org: 'acme' },
  });
  const res = await fetch(`${t.httpUrl}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as Doc;
  controlOnlyKey = (await t.gateway.db.apiKeys.create('acme', { scopes: ['control'] })).key;
  serverCall = (await placeCall(t, { durationMs: 400 })).callSid;
  clientCall = (await placeCall(t, { durationMs: 400, recording: { enabled: true, key: randomBytes(32).toString('hex') } })).callSid;
  // A recording row left in progress (as another instance or a crash would leave it).
  inProgressCall = `CA${randomBytes(16).toString('hex')}`;
  const call = await t.gateway.db.calls.upsertActive({ orgId: 'acme', source: 'twilio', externalId: inProgressCall, startedAt: new Date() });
  await t.gateway.db.recordings.create({
    orgId: 'acme',
    callId: call.id,
    source: 'gateway',
    channels: 2,
    sampleRate: 16000,
    format: 'cvr1',
    mediaType: 'application/vnd.callvault.recording',
    bucket: t.bucket,
    objectKey: `acme/in-progress/${inProgressCall}.cvr`,
    keyMode: 'server',
    keyId: 'test-key-1',
    wrappedKey: new Uint8Array(61),
    startedAt: new Date(),
  });
});

afterAll(async () => {
  await t?.dispose();
});

function operation(method: string, pattern: string): OperationObject | undefined {
  return doc.paths[openApiPath(pattern)]?.[openApiVerb(method)];
}

function documentedStatuses(op: OperationObject): number[] {
  return Object.keys(op.responses)
    .filter((s) => /^\d{3}$/.test(s))
    .map(Number);
}

describe('the document', () => {
  test('is OpenAPI 3.1, the same object the module builds', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
  });

  test('documents every registered route, LiveKit included', () => {
    const routes = registeredRoutes(t.gateway.app);
    expect(routes.map((r) => r.pattern)).toEqual(expect.arrayContaining(['/calls/:callId/recording', '/livekit/webhook']));
    for (const route of routes) expect(operation(route.method, route.pattern), `${route.method} ${route.pattern}`).toBeDefined();
  });

  test('registers every documented HTTP operation (WebSocket upgrades are checked below)', () => {
    const registered = new Set(registeredRoutes(t.gateway.app).map((r) => `${openApiVerb(r.method)} ${openApiPath(r.pattern)}`));
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [verb, op] of Object.entries(item)) {
        if (op[WEBSOCKET_EXTENSION]) continue;
        expect(registered.has(`${verb} ${path}`), `${verb} ${path}`).toBe(true);
      }
    }
  });

  test('every operation has an operationId, a summary and responses, and ids are unique', () => {
    const ids: string[] = [];
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        expect(op.operationId).toEqual(expect.any(String));
        expect(op.summary).toEqual(expect.any(String));
        expect(documentedStatuses(op).length).toBeGreaterThan(0);
        ids.push(op.operationId);
      }
    }
    expect(new Set(ids).size).toBe(ids.length);
  });
});

type Scenario = [method: string, pattern: string, status: number, send: () => Promise<Response>];
const scenarios: Scenario[] = [
  ['get', '/healthz', 200, () => fetch(`${t.httpUrl}/healthz`)],
  ['get', '/readyz', 200, () => fetch(`${t.httpUrl}/readyz`)],
  ['get', '/metrics', 200, () => fetch(`${t.httpUrl}/metrics`)],
  ['get', '/openapi.json', 200, () => fetch(`${t.httpUrl}/openapi.json`)],
  ...(['get', 'head'] as const).flatMap((method): Scenario[] => {
    const m = method.toUpperCase();
    return [
      [method, '/calls/:callId/recording', 200, () => api(t, recordingPath(serverCall), { method: m })],
      [method, '/calls/:callId/recording', 206, () => api(t, recordingPath(serverCall), { method: m, headers: { range: 'bytes=0-99' } })],
      [method, '/calls/:callId/recording', 302, () => api(t, recordingPath(clientCall), { method: m })],
      [method, '/calls/:callId/recording', 401, () => api(t, recordingPath(serverCall), { method: m, authorization: null })],
      [method, '/calls/:callId/recording', 403, () => api(t, recordingPath(serverCall), { method: m, authorization: `Bearer ${controlOnlyKey}` })],
      [method, '/calls/:callId/recording', 404, () => api(t, recordingPath(serverCall), { method: m, org: 'globex' })],
      [method, '/calls/:callId/recording', 409, () => api(t, recordingPath(inProgressCall), { method: m })],
      [method, '/calls/:callId/recording', 416, () => api(t, recordingPath(serverCall), { method: m, headers: { range: 'bytes=99999999-' } })],
      [method, '/calls/:callId/recording', 400, () => api(t, recordingPath(serverCall, '?track=agent'), { method: m })],
    ];
  }),
  ['del', '/calls/:callId/recording', 401, () => api(t, recordingPath(serverCall), { method: 'DELETE', authorization: 'Bearer nope' })],
  ['del', '/calls/:callId/recording', 403, () => api(t, recordingPath(serverCall), { method: 'DELETE', authorization: `Bearer ${controlOnlyKey}` })],
  ['del', '/calls/:callId/recording', 404, () => api(t, recordingPath(serverCall), { method: 'DELETE', org: 'globex' })],
  ['del', '/calls/:callId/recording', 204, () => api(t, recordingPath(inProgressCall), { method: 'DELETE' })],
  // LiveKit routes: what they answer without a LiveKit server behind them.
  ['post', '/livekit/rooms/:room/recording', 401, () => api(t, '/livekit/rooms/r1/recording', { method: 'POST', authorization: null })],
  ['post', '/livekit/rooms/:room/recording', 404, () => api(t, '/livekit/rooms/r1/recording', { method: 'POST', org: 'globex' })],
  ['del', '/livekit/rooms/:room/recording', 401, () => api(t, '/livekit/rooms/r1/recording', { method: 'DELETE', authorization: null })],
  ['del', '/livekit/rooms/:room/recording', 404, () => api(t, '/livekit/rooms/r1/recording', { method: 'DELETE', org: 'globex' })],
  ['post', '/livekit/webhook', 401, () => fetch(`${t.httpUrl}/livekit/webhook`, { method: 'POST', body: '{}', headers: { authorization: 'nope' } })],
  // Mounted even with no SignalWire project configured: every delivery is refused.
  ['post', '/webhooks/signalwire-recording', 403, () => fetch(`${t.httpUrl}/webhooks/signalwire-recording`, { method: 'POST', body: 'AccountSid=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })],
];

describe('status codes', () => {
  test.each(scenarios)('%s %s answers %i, as documented', async (method, pattern, status, send) => {
    const res = await send();
    await res.arrayBuffer();
    expect(res.status).toBe(status);
    const op = operation(method, pattern);
    expect(op).toBeDefined();
    expect(documentedStatuses(op!)).toContain(status);
    if (status >= 400 && method !== 'head' && status !== 503) {
      expect(res.headers.get('content-type')).toBe('application/json');
    }
  });

  test("every status a recording or health route documents is produced above (503: streaming.test.ts, operations.test.ts)", () => {
    for (const route of registeredRoutes(t.gateway.app)) {
      // LiveKit, management, Twilio-style (test/manage/conform.test.ts) and webhook routes produce their statuses in their own test files, which check
      // what they answered against the document (test/support/openapi.ts).
      // A call's artifacts (transcript, events, metadata, bundle): test/artifacts/artifacts.test.ts, likewise.
      // Signed playback URLs and the console: test/api/playback.test.ts and test/console/console.test.ts, likewise.
      if (/^\/(livekit|api|webhooks|twilio|playback|console)(\/|$)/.test(route.pattern) || /^\/calls\/:callId\/(transcript|events|metadata|bundle|playback-url)$/.test(route.pattern)) continue;
      const produced = scenarios.filter(([m, p]) => m === route.method && p === route.pattern).map(([, , s]) => s);
      const documented = documentedStatuses(operation(route.method, route.pattern)!).filter((s) => s !== 503);
      expect({ route: `${route.method} ${route.pattern}`, statuses: [...new Set(produced)].sort() }).toEqual({
        route: `${route.method} ${route.pattern}`,
        statuses: documented.sort(),
      });
    }
  });

  test('every status any route answered during this file is documented for it (from the HTTP metrics)', async () => {
    const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
    const answered = [...text.matchAll(/^callvault_http_request_duration_seconds_count\{method="(\w+)",route="(\w+)",status="(\d+)"\} (\d+)/gm)];
    expect(answered.length).toBeGreaterThan(10);
    const byName = new Map(registeredRoutes(t.gateway.app).map((r) => [r.routeName, r]));
    for (const [, , routeName, status] of answered) {
      const route = byName.get(routeName!);
      expect(route, routeName).toBeDefined();
      expect(documentedStatuses(operation(route!.method, route!.pattern)!), `${routeName} ${status}`).toContain(Number(status));
    }
  });
});

/** A raw upgrade request: fetch cannot send one. */
function upgrade(path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.httpUrl}${path}`, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        ...headers,
      },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('WebSocket endpoints', () => {
  test.each([
    ['/twilio/media', { 'x-twilio-signature': 'forged' }, 403],
    ['/signalwire/media', { 'x-signalwire-signature': 'forged' }, 403],
    ['/livekit/egress', {}, 403],
    ['/livekit/egress', {}, 403, '?room=r&participant=p&track=t&role=caller&exp=9999999999&sig=AAAA'],
  ] as Array<[string, Record<string, string>, number, string?]>)('%s refuses a bad upgrade with a documented status', async (path, headers, status, query = '') => {
    const answered = await upgrade(`${path}${query}`, headers);
    const op = doc.paths[path]?.['get'];
    expect(op?.[WEBSOCKET_EXTENSION]).toBe(true);
    expect(documentedStatuses(op!)).toContain(answered);
    expect(answered).toBe(status);
  });

  test('every documented WebSocket endpoint documents its 101', () => {
    const ws = Object.entries(doc.paths).filter(([, item]) => item['get']?.[WEBSOCKET_EXTENSION]);
    expect(ws.map(([p]) => p).sort()).toEqual(['/livekit/egress', '/signalwire/media', '/twilio/media']);
    for (const [, item] of ws) expect(documentedStatuses(item['get']!)).toContain(101);
  });
});
