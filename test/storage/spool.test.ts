import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool } from '../../dist/storage/index.js';

let root: string;
let spool: Spool;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cv-spool-test-'));
  spool = new Spool(join(root, 'spool'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('Spool', () => {
  test('creates data and manifest files readable by the owner only, in a private directory', async () => {
    const file = await spool.create('rec-1', { recordingId: 'rec-1', bucket: 'b' });
    await file.append(Buffer.from('abc'));
    expect(await mode(file.path)).toBe(0o600);
    expect(await mode(file.manifestPath)).toBe(0o600);
    expect(await mode(join(root, 'spool'))).toBe(0o700);
    expect(file.path).toBe(join(root, 'spool', 'rec-1.cvr'));
    expect(JSON.parse(await readFile(file.manifestPath, 'utf8'))).toEqual({ recordingId: 'rec-1', bucket: 'b' });
  });

  test('appends issued without awaiting land in call order, and size counts written bytes', async () => {
    const file = await spool.create('ordered', {});
    const chunks = Array.from({ length: 200 }, (_, i) => Buffer.alloc(1 + (i % 7) * 100, i));
    const pending = chunks.map((c) => file.append(c));
    // The caller's buffer may be reused as soon as append() returned.
    for (const c of chunks) c.fill(0xff);
    await Promise.all(pending);
    const expected = Buffer.concat(chunks.map((c, i) => Buffer.alloc(c.length, i)));
    expect(file.size).toBe(expected.length);
    expect((await readFile(file.path)).equals(expected)).toBe(true);
  });

  test('seal ends the file: later appends reject with CLOSED and readers see the final size', async () => {
    const file = await spool.create('sealed', {});
    const changes: number[] = [];
    file.onChange(() => changes.push(file.size));
    await file.append(Buffer.alloc(10));
    const sealing = file.seal();
    await expect(file.append(Buffer.alloc(1))).rejects.toMatchObject({ code: 'CLOSED' });
    await sealing;
    expect(file.sealed).toBe(true);
    expect(file.size).toBe(10);
    expect(changes).toEqual([10, 10]);
    await file.seal();
  });

  test('a second spool file for the same recording is refused', async () => {
    await spool.create('dup', {});
    await expect(spool.create('dup', {})).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  test.each(['../escape', 'a/b', '.hidden', '', 'x'.repeat(129)])('recording id %j is refused', async (id) => {
    await expect(spool.create(id, {})).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(readdir(join(root, 'spool')).catch(() => [])).resolves.toEqual([]);
  });

  test('list() returns what is left on disk, for recovery, naming what it cannot read; remove() deletes both files', async () => {
    const a = await spool.create('a', { n: 1 });
    await a.append(Buffer.alloc(5));
    const b = await spool.create('b', { n: 2 });
    await b.append(Buffer.alloc(7));
    await b.seal();
    // Debris a crash could leave: a half-written manifest and data without one.
    await writeFile(join(root, 'spool', 'c.json'), '{"n":');
    await writeFile(join(root, 'spool', 'c.cvr'), 'xx');
    await writeFile(join(root, 'spool', 'd.cvr'), 'xx');

    const reopened = new Spool(join(root, 'spool'));
    expect(await reopened.list()).toEqual([
      { recordingId: 'a', manifest: { n: 1 }, size: 5 },
      { recordingId: 'b', manifest: { n: 2 }, size: 7 },
      // Listed, so recovery logs it, rather than passed over in silence.
      { recordingId: 'c', manifest: {}, size: 0, unreadable: 'SyntaxError' },
    ]);

    await b.remove();
    await a.remove();
    await expect(a.append(Buffer.alloc(1))).rejects.toMatchObject({ code: 'CLOSED' });
    expect((await reopened.list()).map((e) => e.recordingId)).toEqual(['c']);
    expect((await readdir(join(root, 'spool'))).sort()).toEqual(['c.cvr', 'c.json', 'd.cvr']);
  });
});
