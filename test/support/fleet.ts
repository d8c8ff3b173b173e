/**
 * A gateway process as a member of a test fleet (test/e2e/fleet*.test.ts): its id, volume, environment and
 * process, and the few reads the fleet tests make of it over HTTP with one organisation's API key.
 */
import type { TestGateway } from './gateway.js';
import type { GatewayProcess } from './process.js';

export interface Member {
  id: string;
  dataDir: string;
  env: Record<string, string>;
  proc: GatewayProcess;
  port: number;
}

/** An API request to `m` with `apiKey` (JSON body when given). */
export function memberCall(m: Member, apiKey: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${m.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** Twilio media frames `m` received, the fewer of its two tracks'. */
export async function framesOn(m: Member): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text();
  const inbound = Number(/^callvault_frames_received_total\{source="twilio",track="inbound"\} (\d+)/m.exec(text)?.[1] ?? 0);
  const outbound = Number(/^callvault_frames_received_total\{source="twilio",track="outbound"\} (\d+)/m.exec(text)?.[1] ?? 0);
  return Math.min(inbound, outbound);
}

/** A member as RawTwilioStream needs it (it only reads the port). */
export function asTestGateway(m: Member): TestGateway {
  return { gateway: { port: m.port } } as unknown as TestGateway;
}
