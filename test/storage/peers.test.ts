import { describe, expect, test } from 'vitest';
import pg from 'pg';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { freshBucket, freshDatabase, s3Client } from '../support/peers.js';

describe('test peers', () => {
  test('a fresh database accepts writes and is isolated by name', async () => {
    const db = await freshDatabase();
    try {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query('CREATE TABLE t (v int)');
        await client.query('INSERT INTO t VALUES (42)');
        const { rows } = await client.query<{ v: number; db: string }>('SELECT v, current_database() AS db FROM t');
        expect(rows).toEqual([{ v: 42, db: db.name }]);
      } finally {
        await client.end();
      }
    } finally {
      await db.drop();
    }
  });

  test('a fresh bucket stores and returns bytes unchanged', async () => {
    const bucket = await freshBucket();
    const client = s3Client();
    try {
      const body = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 251));
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'probe', Body: body }));
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'probe' }));
      const bytes = Buffer.from(await got.Body!.transformToByteArray());
      expect(bytes.equals(body)).toBe(true);
    } finally {
      client.destroy();
    }
  });
});
