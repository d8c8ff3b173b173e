/**
 * Keeps the OpenAPI document true from every test file that drives HTTP routes: whatever status a route
 * answered during the file (read back from the gateway's own request metrics) must be documented for it.
 */
import { expect } from 'vitest';
import { registeredRoutes } from '../../dist/api/index.js';
import { openApiDocument, openApiPath, openApiVerb, type OperationObject } from '../../dist/api/openapi.js';
import type { Gateway } from '../../dist/gateway/gateway.js';

type Doc = { paths: Record<string, Record<string, OperationObject>> };

export function documentedStatuses(method: string, pattern: string): number[] {
  const op = (openApiDocument() as unknown as Doc).paths[openApiPath(pattern)]?.[openApiVerb(method)];
  return Object.keys(op?.responses ?? {})
    .filter((s) => /^\d{3}$/.test(s))
    .map(Number);
}

/** Asserts every (route, status) the gateway answered is documented; returns how many pairs were checked. */
export async function expectAnsweredStatusesDocumented(gateway: Gateway): Promise<number> {
  const text = (await gateway.metrics.render()).body;
  const answered = [...text.matchAll(/^callvault_http_request_duration_seconds_count\{method="(\w+)",route="([\w-]+)",status="(\d+)"\} \d+/gm)];
  const byName = new Map(registeredRoutes(gateway.app).map((r) => [r.routeName, r]));
  for (const [, , routeName, status] of answered) {
    const route = byName.get(routeName!);
    expect(route, `route ${routeName} is registered`).toBeDefined();
    expect(documentedStatuses(route!.method, route!.pattern), `${routeName} answered ${status}`).toContain(Number(status));
  }
  return answered.length;
}
