/**
 * SPOOL_CHECKPOINT_SECONDS and SPOOL_CHECKPOINT_TAKEOVER_SECONDS as the gateway's own schema reads them: off by
 * default, 0 or 1–3600 s, and the takeover period's default.
 */
import { expect, test } from 'vitest';
import { EnvSchema } from '../../dist/config/index.js';

test.each([
  [undefined, 0],
  ['0', 0],
  ['1', 1],
  ['30', 30],
  ['3600', 3600],
])('SPOOL_CHECKPOINT_SECONDS=%s is accepted as %d', (value, expected) => {
  const env = EnvSchema.parse(value === undefined ? {} : { SPOOL_CHECKPOINT_SECONDS: value });
  expect(env.SPOOL_CHECKPOINT_SECONDS).toBe(expected);
  expect(env.SPOOL_CHECKPOINT_TAKEOVER_SECONDS).toBe(300);
});

test.each(['0.5', '-1', '3601', 'soon'])('SPOOL_CHECKPOINT_SECONDS=%s is refused', (value) => {
  const result = EnvSchema.safeParse({ SPOOL_CHECKPOINT_SECONDS: value });
  expect(result.success).toBe(false);
  expect(result.error?.issues.map((i) => i.path.join('.'))).toContain('SPOOL_CHECKPOINT_SECONDS');
});

test.each([
  ['5', 5],
  ['0', 0],
])('SPOOL_CHECKPOINT_TAKEOVER_SECONDS=%s is accepted as %d', (value, expected) => {
  expect(EnvSchema.parse({ SPOOL_CHECKPOINT_TAKEOVER_SECONDS: value }).SPOOL_CHECKPOINT_TAKEOVER_SECONDS).toBe(expected);
});
