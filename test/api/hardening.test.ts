/**
 * Hostile HTTP input answers with a clear error and never takes the gateway down: every other call and
 * request carries on.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { apiKeyOf } from './support.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startTestGateway();
});
afterAll(async () => {
  await t?.dispose();
});

/** A raw request: fetch would normalise a malformed path before sending it. */
function raw(method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.httpUrl}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : null });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

test.each([
  ['GET', '/calls/%ZZ/recording'],
  ['DELETE', '/calls/%E0%A4%A/recording'],
  ['GET', '/api/call-recordings/%/media'],
  ['PUT', '/api/agents/%C0'],
])('%s %s (a malformed escape) answers 400 and the gateway keeps serving', async (method, path) => {
  const res = await raw(method, path, { authorization: `Bearer ${apiKeyOf(t, 'acme')}` });
  expect(res).toEqual({ status: 400, json: { error: expect.objectContaining({ code: 'BAD_REQUEST' }) } });
  expect((await fetch(`${t.httpUrl}/healthz`)).status).toBe(200);
});

test('a body declared larger than the route accepts is refused with 413 before it is read', async () => {
  const res = await raw('PUT', '/api/agents/agent-1', {
    authorization: `Bearer ${apiKeyOf(t, 'acme')}`,
    'content-type': 'application/json',
    'content-length': String(64 * 1024 * 1024),
  });
  expect(res).toEqual({ status: 413, json: { error: expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }) } });
});
