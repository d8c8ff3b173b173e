/**
 * The dependency rules of .dependency-cruiser.cjs hold on src/ as it is, and each one catches the wrong
 * import it is there for: a copy of src/ gets one offending line, and depcruise must name that rule.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const DEPCRUISE = join(ROOT, 'node_modules/.bin/depcruise');

interface CruiseResult {
  ok: boolean;
  violations: string[];
}

async function cruise(dir: string): Promise<CruiseResult> {
  try {
    await run(DEPCRUISE, ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], { cwd: dir });
    return { ok: true, violations: [] };
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '');
    const violations = [...out.matchAll(/error ([a-z-]+): (\S+) →\s+(\S+)/g)].map((m) => `${m[1]}: ${m[2]} → ${m[3]}`);
    return { ok: false, violations };
  }
}

test('src/ as it is breaks no rule', async () => {
  expect(await cruise(ROOT)).toEqual({ ok: true, violations: [] });
});

describe('each rule catches the import it forbids', () => {
  let copy: string;
  beforeAll(async () => {
    copy = await mkdtemp(join(tmpdir(), 'callvault-layers-'));
    await cp(join(ROOT, 'src'), join(copy, 'src'), { recursive: true });
    for (const file of ['.dependency-cruiser.cjs', 'tsconfig.json', 'package.json']) await cp(join(ROOT, file), join(copy, file));
    // Packages resolve as they do in the project (an unresolvable import is itself a violation).
    await symlink(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
  });
  afterAll(async () => {
    await rm(copy, { recursive: true, force: true });
  });

  test.each<{ rule: string; file: string; line: string; to: string; from?: string }>([
    { rule: 'core-not-to-edges', file: 'src/gateway/call.ts', line: "import '../api/index.js';", to: 'src/api/index.ts' },
    { rule: 'core-not-to-edges', file: 'src/gateway/recording.ts', line: "import '../bootstrap/wiring.js';", to: 'src/bootstrap/wiring.ts' },
    { rule: 'edges-through-the-port', file: 'src/api/index.ts', line: "import '../gateway/gateway.js';", to: 'src/gateway/gateway.ts' },
    { rule: 'edges-through-the-port', file: 'src/ingest/livekit/route.ts', line: "import type { Track } from '../../gateway/track.js'; export type T = Track;", to: 'src/gateway/track.ts' },
    { rule: 'api-not-to-other-edges', file: 'src/api/manage/webhooks.ts', line: "import '../../twilio-rest/index.js';", to: 'src/twilio-rest/index.ts' },
    { rule: 'ingest-not-to-other-edges', file: 'src/ingest/twilio/route.ts', line: "import '../../api/openapi.js';", to: 'src/api/openapi.ts' },
    { rule: 'twilio-rest-not-to-other-edges', file: 'src/twilio-rest/import.ts', line: "import '../ingest/twilio/index.js';", to: 'src/ingest/twilio/index.ts' },
    { rule: 'edges-not-to-storage', file: 'src/api/recordings.ts', line: "import '../storage/index.js';", to: 'src/storage/index.ts' },
    { rule: 'edges-use-db-and-pipeline-types-only', file: 'src/api/manage/agents.ts', line: "import { createDatabase } from '../../db/index.js'; export const d = createDatabase;", to: 'src/db/index.ts' },
    { rule: 'libraries-not-up', file: 'src/storage/spool.ts', line: "import '../gateway/retry.js';", to: 'src/gateway/retry.ts' },
    { rule: 'only-entry-points-import-bootstrap', file: 'src/cli/index.ts', line: "import '../bootstrap/from-env.js';", to: 'src/bootstrap/from-env.ts' },
    // config/ already imports errors/: the cycle is reported from its first module.
    { rule: 'no-circular', file: 'src/errors/index.ts', line: "import '../config/index.js';", from: 'src/config/index.ts', to: 'src/errors/index.ts' },
  ])('$rule: $file → $to', async ({ rule, file, line, to, ...reported }) => {
    const path = join(copy, file);
    const original = await readFile(path, 'utf8');
    await writeFile(path, `${original}\n${line}\n`);
    try {
      const result = await cruise(copy);
      expect(result.ok).toBe(false);
      expect(result.violations).toContain(`${rule}: ${reported.from ?? file} → ${to}`);
    } finally {
      await writeFile(path, original);
    }
  });
});
