/**
 * Warnings a peer can trigger at will (refused upgrades, refused webhooks, sockets closed for overload) are
 * rate-limited: the first is logged, then at most one line per interval, carrying how many were left out.
 */
import { expect, test } from 'vitest';
import { createLogger, rateLimitedWarn } from '../../dist/log/index.js';
import { LogCapture } from '../support/gateway.js';

test('the first warning is logged, the rest of the interval counted into the next line', () => {
  const logs = new LogCapture();
  let clock = 1_000;
  const warn = rateLimitedWarn(createLogger({ destination: logs }), 'upgrade refused', { intervalMs: 10_000, now: () => clock });
  for (let i = 0; i < 61_534; i++) warn({ code: 'OVERLOADED' });
  expect(logs.find('upgrade refused')).toEqual([expect.objectContaining({ code: 'OVERLOADED', level: 40 })]);
  clock += 9_999;
  warn({ code: 'OVERLOADED' });
  expect(logs.find('upgrade refused')).toHaveLength(1);
  clock += 1;
  warn({ code: 'SIGNATURE_INVALID' });
  expect(logs.find('upgrade refused')).toHaveLength(2);
  expect(logs.find('upgrade refused')[1]).toMatchObject({ code: 'SIGNATURE_INVALID', suppressed: 61_534 });
  clock += 10_000;
  warn({ code: 'SIGNATURE_INVALID' });
  expect(logs.find('upgrade refused')[2]).not.toHaveProperty('suppressed');
});
