import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pg from 'pg';
import { createDatabase } from '../../dist/db/index.js';
import { migrations } from '../../dist/db/migrations/index.js';
import { freshDatabase } from '../support/peers.js';
import { openTestDatabase, rejectionOf, sha256, silentLogger, type TestDatabase } from './support.js';

let t: TestDatabase;

beforeAll(async () => {
  t = await openTestDatabase();
  await t.db.organisations.ensure('acme', 'Acme Corp');
  await t.db.organisations.ensure('globex');
});

afterAll(async () => {
  await t?.dispose();
});

describe('generated keys', () => {
  test('create returns a cvk_ token that verifies to its organisation and is stored only as a hash', async () => {
    const created = await t.db.apiKeys.create('acme', 'ci');

    expect(created.key).toMatch(/^cvk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(created.key.slice(4, 16)).toBe(created.prefix);
    expect(await t.db.apiKeys.verify(created.key)).toMatchObject({ orgId: 'acme', keyId: created.id });

    const [row] = await t.sql<{ hash: Buffer }>('SELECT * FROM api_keys WHERE id = $1', [created.id]);
    expect(row!.hash.equals(sha256(created.key))).toBe(true);
    const secret = created.key.slice(17);
    const stored = JSON.stringify(await t.sql('SELECT * FROM api_keys'));
    expect(stored).not.toContain(secret);
  });

  test('every key is different', async () => {
    const keys = await Promise.all(Array.from({ length: 10 }, () => t.db.apiKeys.create('globex')));
    expect(new Set(keys.map((k) => k.key)).size).toBe(10);
    expect(new Set(keys.map((k) => k.prefix)).size).toBe(10);
  });

  const wrongKeys: Array<[string, (key: string) => string]> = [
    ['right prefix, wrong secret', (key) => `${key.slice(0, 17)}${'A'.repeat(43)}`],
    ['last character changed', (key) => `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`],
    ['truncated', (key) => key.slice(0, -1)],
    ['with a trailing space', (key) => `${key} `],
    ['uppercased', (key) => key.toUpperCase()],
    ['empty', () => ''],
    ['unknown prefix', () => `cvk_000000000000_${'x'.repeat(43)}`],
    ['arbitrary text', () => 'not-a-key-at-all-but-long-enough'],
    ['huge', (key) => key.repeat(100)],
  ];

  test.each(wrongKeys)('a wrong key (%s) does not verify', async (_name, mutate) => {
    const { key } = await t.db.apiKeys.create('acme');
    expect(await t.db.apiKeys.verify(mutate(key))).toBeNull();
    expect(await t.db.apiKeys.verify(key)).not.toBeNull();
  });

  test('list shows the organisation’s keys, never hashes or secrets', async () => {
    const created = await t.db.apiKeys.create('acme', 'listed');
    const listed = await t.db.apiKeys.list('acme');

    const entry = listed.find((k) => k.id === created.id);
    expect(entry).toEqual({
      id: created.id,
      orgId: 'acme',
      prefix: created.prefix,
      label: 'listed',
      scopes: ['read', 'control', 'delete', 'admin'],
      userId: null,
      createdAt: expect.any(Date),
      revokedAt: null,
    });
    for (const key of listed) {
      expect(Object.keys(key).sort()).toEqual(['createdAt', 'id', 'label', 'orgId', 'prefix', 'revokedAt', 'scopes', 'userId']);
      expect(key.orgId).toBe('acme');
    }
    expect(JSON.stringify(listed)).not.toContain(created.key.slice(17));
    expect((await t.db.apiKeys.list('globex')).some((k) => k.id === created.id)).toBe(false);
  });

  test('revoke is scoped to the organisation, takes effect at once, and happens once', async () => {
    const created = await t.db.apiKeys.create('acme', 'to-revoke');

    expect(await t.db.apiKeys.revoke('globex', created.id)).toBe(false);
    expect(await t.db.apiKeys.verify(created.key)).toMatchObject({ orgId: 'acme', keyId: created.id });

    expect(await t.db.apiKeys.revoke('acme', created.id)).toBe(true);
    expect(await t.db.apiKeys.verify(created.key)).toBeNull();
    expect(await t.db.apiKeys.revoke('acme', created.id)).toBe(false);
    expect(await t.db.apiKeys.revoke('acme', 'not-a-uuid')).toBe(false);

    const entry = (await t.db.apiKeys.list('acme')).find((k) => k.id === created.id);
    expect(entry?.revokedAt).toBeInstanceOf(Date);
  });

  test('creating a key for an unknown organisation fails with NOT_FOUND', async () => {
    expect(await rejectionOf(t.db.apiKeys.create('nobody'))).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('bootstrap keys from configuration', () => {
  test.each([
    ['plain configuration string', 'initech', 'devkey-0123456789abcdef'],
    ['string shaped like a generated key', 'hooli', `cvk_0123456789ab_${'k'.repeat(43)}`],
  ])('a %s verifies through the same path and is registered idempotently', async (_name, orgId, key) => {
    const first = await t.db.apiKeys.ensureBootstrap(orgId, key);
    const second = await t.db.apiKeys.ensureBootstrap(orgId, key);

    expect(second.id).toBe(first.id);
    expect(first).toMatchObject({ orgId, label: 'bootstrap', revokedAt: null });
    expect(await t.db.organisations.get(orgId)).toMatchObject({ id: orgId, name: orgId });
    expect(await t.db.apiKeys.list(orgId)).toHaveLength(1);
    expect(await t.db.apiKeys.verify(key)).toMatchObject({ orgId, keyId: first.id });
    expect(await t.db.apiKeys.verify(`${key}x`)).toBeNull();

    const [row] = await t.sql<{ hash: Buffer }>('SELECT hash FROM api_keys WHERE id = $1', [first.id]);
    expect(row!.hash.equals(sha256(key))).toBe(true);
  });

  test('a plain bootstrap key’s prefix is the first 12 hex characters of its SHA-256', async () => {
    const key = 'umbrella-key-0123456789abcdef';
    const info = await t.db.apiKeys.ensureBootstrap('umbrella', key);
    expect(info.prefix).toBe(sha256(key).toString('hex').slice(0, 12));
  });

  test('the same key configured for a second organisation is a CONFLICT, and the first keeps it', async () => {
    const key = 'shared-key-0123456789abcdef';
    const first = await t.db.apiKeys.ensureBootstrap('acme', key);

    expect(await rejectionOf(t.db.apiKeys.ensureBootstrap('globex', key))).toMatchObject({ code: 'CONFLICT' });
    expect(await t.db.apiKeys.verify(key)).toMatchObject({ orgId: 'acme', keyId: first.id });
  });

  test('a bootstrap key revoked through the API stays revoked when configuration is applied again', async () => {
    const key = 'revoked-key-0123456789abcdef';
    const info = await t.db.apiKeys.ensureBootstrap('acme', key);
    expect(await t.db.apiKeys.revoke('acme', info.id)).toBe(true);

    const again = await t.db.apiKeys.ensureBootstrap('acme', key);
    expect(again.revokedAt).toBeInstanceOf(Date);
    expect(await t.db.apiKeys.verify(key)).toBeNull();
  });

  test('a bootstrap key shorter than 16 characters is rejected as invalid configuration', async () => {
    expect(await rejectionOf(t.db.apiKeys.ensureBootstrap('acme', 'too-short'))).toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('scopes and user binding', () => {
  test('a key has every scope unless told otherwise, and no user', async () => {
    const created = await t.db.apiKeys.create('acme', 'all');
    expect(await t.db.apiKeys.verify(created.key)).toEqual({ orgId: 'acme', keyId: created.id, scopes: ['read', 'control', 'delete', 'admin'], userId: null });
  });

  test('a key made with scopes and a user verifies to exactly those, in canonical order, and lists them', async () => {
    const created = await t.db.apiKeys.create('acme', { label: 'agent ui', scopes: ['control', 'read'], userId: 'u123' });
    expect(await t.db.apiKeys.verify(created.key)).toEqual({ orgId: 'acme', keyId: created.id, scopes: ['read', 'control'], userId: 'u123' });
    const listed = (await t.db.apiKeys.list('acme')).find((k) => k.id === created.id);
    expect(listed).toMatchObject({ label: 'agent ui', scopes: ['read', 'control'], userId: 'u123' });
  });

  test.each([
    ['no scope at all', { scopes: [] }],
    ['an unknown scope', { scopes: ['read', 'superuser'] }],
    ['a user id with a space', { userId: 'u 123' }],
  ] as const)('%s is refused (BAD_REQUEST), nothing stored', async (_name, opts) => {
    const before = (await t.db.apiKeys.list('globex')).length;
    expect(await rejectionOf(t.db.apiKeys.create('globex', opts as never))).toMatchObject({ code: 'BAD_REQUEST' });
    expect((await t.db.apiKeys.list('globex')).length).toBe(before);
  });

  test('keys that existed before scopes (migration 7) keep every scope and no user', async () => {
    const fresh = await freshDatabase();
    const client = new pg.Client({ connectionString: fresh.url });
    await client.connect();
    try {
      // The schema as the previous release left it, with a key in it.
      await client.query('CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
      for (const m of migrations.filter((m) => m.version < 7)) {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
      await client.query("INSERT INTO organisations (id, name) VALUES ('acme', 'acme')");
      const old = 'an-old-bootstrap-key-0123456789';
      await client.query("INSERT INTO api_keys (org_id, prefix, hash, label) VALUES ('acme', $1, $2, 'bootstrap')", [
        sha256(old).toString('hex').slice(0, 12),
        sha256(old),
      ]);
      const db = createDatabase({ url: fresh.url, logger: silentLogger, max: 2 });
      try {
        expect((await db.migrate()).applied).toContain(7);
        expect(await db.apiKeys.verify(old)).toMatchObject({ orgId: 'acme', scopes: ['read', 'control', 'delete', 'admin'], userId: null });
      } finally {
        await db.close();
      }
    } finally {
      await client.end();
      await fresh.drop();
    }
  });
});
