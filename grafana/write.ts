/**
 * `npm run dashboards`: writes the JSON that grafana/dashboards.ts builds into the directory given as the
 * only argument (grafana/dashboards), and removes JSON files there that the code no longer builds.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderDashboards } from './dashboards.js';

const [dir] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: node dist-grafana/write.js <output directory>\n');
  process.exit(2);
}
await mkdir(dir, { recursive: true });
const files = renderDashboards();
for (const name of await readdir(dir)) {
  if (name.endsWith('.json') && !files.has(name)) await rm(join(dir, name));
}
for (const [name, text] of files) {
  await writeFile(join(dir, name), text);
  process.stdout.write(`${join(dir, name)}\n`);
}
