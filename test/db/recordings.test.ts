import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CreateRecordingInput, Recording, ListRecordingsQuery } from '../../dist/db/index.js';
import { openTestDatabase, rejectionOf, type TestDatabase } from './support.js';

let t: TestDatabase;
const at = (iso: string) => new Date(iso);
const WRAPPED_KEY = Uint8Array.from({ length: 60 }, (_, i) => (i * 37 + 11) & 0xff);

beforeAll(async () => {
  // Enough connections that the concurrent-append test really runs its UPDATEs side by side.
  t = await openTestDatabase({ max: 10 });
  await t.db.organisations.ensure('acme');
  await t.db.organisations.ensure('globex');
});

afterAll(async () => {
  await t?.dispose();
});

async function newCall(orgId: string, externalId: string) {
  return t.db.calls.upsertActive({ orgId, source: 'twilio', externalId, startedAt: at('2024-06-01T12:00:00.000Z') });
}

function recordingInput(overrides: Partial<CreateRecordingInput> = {}): CreateRecordingInput {
  return {
    orgId: 'acme',
    callId: null,
    source: 'twilio',
    channels: 2,
    sampleRate: 16000,
    format: 'cvr1',
    mediaType: 'application/vnd.callvault.recording',
    bucket: 'recordings',
    objectKey: `acme/${Math.random().toString(36).slice(2)}.cvr`,
    keyMode: 'server',
    keyId: 'mk-2024',
    wrappedKey: WRAPPED_KEY,
    startedAt: at('2024-06-01T12:00:01.000Z'),
    metadata: { track: 'both' },
    ...overrides,
  };
}

describe('lifecycle', () => {
  test('create → complete stores every field and maps types (bigint sizes as numbers, bytes as Buffer)', async () => {
    const call = await newCall('acme', 'CA33333333333333333333333333333333');
    const created = await t.db.recordings.create(recordingInput({ callId: call.id }));

    expect(created).toMatchObject({
      orgId: 'acme',
      callId: call.id,
      status: 'in_progress',
      source: 'twilio',
      channels: 2,
      sampleRate: 16000,
      keyMode: 'server',
      keyId: 'mk-2024',
      durationMs: null,
      sizeBytes: null,
      errorCode: null,
      endedAt: null,
      startedAt: at('2024-06-01T12:00:01.000Z'),
      metadata: { track: 'both' },
    });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.recordingSid).toMatch(/^CR[0-9a-f]{32}$/);
    expect(Buffer.compare(created.wrappedKey!, Buffer.from(WRAPPED_KEY))).toBe(0);

    // Larger than 2^32 so a 32-bit mapping would show.
    const sizeBytes = 6_000_000_123;
    const completed = await t.db.recordings.complete(created.id, {
      durationMs: 3_600_250,
      sizeBytes,
      endedAt: at('2024-06-01T13:00:01.250Z'),
    });
    expect(completed).toMatchObject({
      id: created.id,
      recordingSid: created.recordingSid,
      status: 'completed',
      durationMs: 3_600_250,
      sizeBytes,
      endedAt: at('2024-06-01T13:00:01.250Z'),
    });
    expect(typeof completed.sizeBytes).toBe('number');
    expect(await t.db.recordings.get('acme', created.id)).toEqual(completed);
    expect(await t.db.recordings.get('acme', created.recordingSid)).toEqual(completed);
  });

  test('a finished recording cannot change state again', async () => {
    const recording = await t.db.recordings.create(recordingInput());
    await t.db.recordings.complete(recording.id, { durationMs: 1000, sizeBytes: 2000, endedAt: at('2024-06-01T12:00:02.000Z') });

    const complete = await rejectionOf(
      t.db.recordings.complete(recording.id, { durationMs: 5, sizeBytes: 5, endedAt: new Date() }),
    );
    expect(complete).toMatchObject({ code: 'CONFLICT', details: { status: 'completed' } });
    const fail = await rejectionOf(t.db.recordings.fail(recording.id, { errorCode: 'UPLOAD_FAILED', endedAt: new Date() }));
    expect(fail).toMatchObject({ code: 'CONFLICT' });
    expect(await t.db.recordings.get('acme', recording.id)).toMatchObject({ status: 'completed', durationMs: 1000 });
  });

  test('fail records the error code and end time', async () => {
    const recording = await t.db.recordings.create(recordingInput({ keyMode: 'client', keyId: null, wrappedKey: null }));
    const failed = await t.db.recordings.fail(recording.id, { errorCode: 'UPLOAD_FAILED', endedAt: at('2024-06-01T12:00:09.000Z') });
    expect(failed).toMatchObject({
      status: 'failed',
      errorCode: 'UPLOAD_FAILED',
      endedAt: at('2024-06-01T12:00:09.000Z'),
      keyMode: 'client',
      keyId: null,
      wrappedKey: null,
    });
  });

  test.each([
    ['complete', (id: string) => t.db.recordings.complete(id, { durationMs: 1, sizeBytes: 1, endedAt: new Date() })],
    ['fail', (id: string) => t.db.recordings.fail(id, { errorCode: 'X', endedAt: new Date() })],
    ['mergeMetadata', (id: string) => t.db.recordings.mergeMetadata(id, { a: 1 })],
    ['appendMetadataEvent', (id: string) => t.db.recordings.appendMetadataEvent(id, 'dtmf', { digit: '1' })],
  ])('%s on an unknown recording is NOT_FOUND', async (_name, act) => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'garbage']) {
      expect(await rejectionOf(act(id))).toMatchObject({ code: 'NOT_FOUND' });
    }
  });

  test.each([
    ['server key mode without a wrapped key', recordingInput({ keyId: null, wrappedKey: null }), 'BAD_REQUEST'],
    ['an unknown source', recordingInput({ source: 'skype' as never }), 'BAD_REQUEST'],
    ['zero channels', recordingInput({ channels: 0 }), 'BAD_REQUEST'],
    ['an unknown organisation', recordingInput({ orgId: 'nobody' }), 'NOT_FOUND'],
  ])('create rejects %s', async (_name, input, code) => {
    expect(await rejectionOf(t.db.recordings.create(input))).toMatchObject({ code });
  });

  test('a recording cannot be attached to another organisation’s call', async () => {
    const globexCall = await newCall('globex', 'CA44444444444444444444444444444444');
    const err = await rejectionOf(t.db.recordings.create(recordingInput({ orgId: 'acme', callId: globexCall.id })));
    expect(err).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('metadata', () => {
  test('mergeMetadata merges top-level keys with jsonb ||', async () => {
    const recording = await t.db.recordings.create(recordingInput({ metadata: { a: 1, nested: { x: 1 } } }));
    const merged = await t.db.recordings.mergeMetadata(recording.id, { b: 2, nested: { y: 2 } });

    expect(merged).toEqual({ a: 1, b: 2, nested: { y: 2 } });
    expect((await t.db.recordings.get('acme', recording.id))?.metadata).toEqual({ a: 1, b: 2, nested: { y: 2 } });
    expect(await rejectionOf(t.db.recordings.mergeMetadata(recording.id, [1, 2] as never))).toMatchObject({
      code: 'BAD_REQUEST',
    });
  });

  test('20 parallel appends to each of three lists keep every event', async () => {
    // A non-array under a list name is replaced by a list rather than breaking every later append.
    const recording = await t.db.recordings.create(recordingInput({ metadata: { track: 'both', marks: 'not-a-list' } }));
    const lists = ['dtmf', 'marks', 'pauses'];

    await Promise.all(
      Array.from({ length: 20 }, (_, seq) =>
        lists.map((list) => t.db.recordings.appendMetadataEvent(recording.id, list, { seq, list, at: 1000 + seq })),
      ).flat(),
    );

    const { metadata } = (await t.db.recordings.get('acme', recording.id))!;
    for (const list of lists) {
      const events = metadata[list] as Array<{ seq: number; list: string; at: number }>;
      expect(events).toHaveLength(20);
      expect(events.every((e) => e.list === list && e.at === 1000 + e.seq)).toBe(true);
      expect(events.map((e) => e.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    }
    expect(metadata['track']).toBe('both');
  });

  test('appending an array keeps it as one event', async () => {
    const recording = await t.db.recordings.create(recordingInput());
    await t.db.recordings.appendMetadataEvent(recording.id, 'marks', ['a', 'b']);
    await t.db.recordings.appendMetadataEvent(recording.id, 'marks', 'c');
    expect((await t.db.recordings.get('acme', recording.id))?.metadata['marks']).toEqual([['a', 'b'], 'c']);
  });

  test.each(['', 'has space', '1starts-with-digit', "quote'", 'x'.repeat(65)])(
    'list name %j is rejected',
    async (name) => {
      const recording = await t.db.recordings.create(recordingInput());
      expect(await rejectionOf(t.db.recordings.appendMetadataEvent(recording.id, name, {}))).toMatchObject({
        code: 'BAD_REQUEST',
      });
    },
  );
});

describe('organisation scoping', () => {
  test('another organisation cannot get, find, list or delete a recording', async () => {
    const call = await newCall('acme', 'CA55555555555555555555555555555555');
    const recording = await t.db.recordings.create(recordingInput({ callId: call.id }));
    await t.db.recordings.complete(recording.id, { durationMs: 10, sizeBytes: 20, endedAt: at('2024-06-01T12:00:05.000Z') });

    expect(await t.db.recordings.get('globex', recording.id)).toBeNull();
    expect(await t.db.recordings.get('globex', recording.recordingSid)).toBeNull();
    expect(await t.db.recordings.latestCompletedForCall('globex', call.externalId)).toBeNull();
    expect(await t.db.recordings.list('globex', { callSid: call.externalId, page: 0, limit: 50 })).toEqual({
      total: 0,
      rows: [],
    });
    expect(await t.db.recordings.delete('globex', recording.id)).toBeNull();
    expect(await t.db.recordings.delete('globex', recording.recordingSid)).toBeNull();
    expect(await t.db.recordings.get('acme', recording.id)).not.toBeNull();
  });

  test('delete returns the deleted row once, by id or by SID', async () => {
    const byId = await t.db.recordings.create(recordingInput());
    const bySid = await t.db.recordings.create(recordingInput());

    expect(await t.db.recordings.delete('acme', byId.id)).toEqual(byId);
    expect(await t.db.recordings.delete('acme', bySid.recordingSid)).toEqual(bySid);
    expect(await t.db.recordings.get('acme', byId.id)).toBeNull();
    expect(await t.db.recordings.delete('acme', byId.id)).toBeNull();
    expect(await t.db.recordings.delete('acme', 'not-an-id')).toBeNull();
  });

  test.each(['not-an-id', 'CR' + 'g'.repeat(32), '', 'RE0123'])('get with malformed id %j finds nothing', async (id) => {
    expect(await t.db.recordings.get('acme', id)).toBeNull();
  });
});

describe('latestCompletedForCall', () => {
  test('picks the most recently started completed recording of the call', async () => {
    const call = await newCall('acme', 'CA66666666666666666666666666666666');
    const other = await newCall('acme', 'CA77777777777777777777777777777777');
    const make = async (callId: string, startedAt: string, finish: 'complete' | 'fail' | 'none') => {
      const r = await t.db.recordings.create(recordingInput({ callId, startedAt: at(startedAt) }));
      if (finish === 'complete') return t.db.recordings.complete(r.id, { durationMs: 1, sizeBytes: 1, endedAt: at(startedAt) });
      if (finish === 'fail') return t.db.recordings.fail(r.id, { errorCode: 'UPLOAD_FAILED', endedAt: at(startedAt) });
      return r;
    };
    await make(call.id, '2024-06-01T12:01:00.000Z', 'complete');
    const expected = await make(call.id, '2024-06-01T12:02:00.000Z', 'complete');
    await make(call.id, '2024-06-01T12:03:00.000Z', 'fail');
    await make(call.id, '2024-06-01T12:04:00.000Z', 'none');
    await make(other.id, '2024-06-01T12:05:00.000Z', 'complete');

    expect(await t.db.recordings.latestCompletedForCall('acme', call.externalId)).toEqual(expected);
    expect(await t.db.recordings.latestCompletedForCall('acme', 'CA00000000000000000000000000000000')).toBeNull();
  });
});

describe('list', () => {
  const ORG = 'listco';
  const SEEDED = 300;
  const BASE = at('2024-01-01T00:00:00.000Z');
  const CALL_SIDS = [0, 1, 2].map((i) => `CA${String(i).padStart(32, '0')}`);
  let all: Recording[];

  beforeAll(async () => {
    await t.db.organisations.ensure(ORG);
    for (const sid of CALL_SIDS) {
      await t.db.calls.upsertActive({ orgId: ORG, source: 'twilio', externalId: sid, startedAt: BASE });
    }
    // Pairs of rows share a start time, so ordering must fall back to the id.
    const seed = (orgId: string, count: number) =>
      t.sql(
        `INSERT INTO recordings (recording_sid, org_id, call_id, status, source, channels, sample_rate, format,
           media_type, duration_ms, size_bytes, bucket, object_key, key_mode, error_code, started_at, ended_at)
         SELECT 'CR' || md5($1 || i::text), $1,
           (SELECT id FROM calls WHERE org_id = $1 AND external_id = 'CA' || lpad(((i / 3) % 3)::text, 32, '0')),
           (ARRAY['in_progress', 'completed', 'failed'])[i % 3 + 1],
           (ARRAY['gateway', 'livekit', 'twilio', 'elevenlabs'])[i % 4 + 1],
           1 + i % 2, 16000, 'cvr1', 'application/vnd.callvault.recording',
           CASE WHEN i % 3 = 1 THEN i * 1000 END, CASE WHEN i % 3 = 1 THEN i * 100 END,
           'recordings', $1 || '/' || i, 'client', CASE WHEN i % 3 = 2 THEN 'UPLOAD_FAILED' END,
           $2::timestamptz + (i / 2) * interval '1 minute',
           CASE WHEN i % 3 <> 0 THEN $2::timestamptz + (i / 2) * interval '1 minute' + interval '30 seconds' END
         FROM generate_series(0, $3::int - 1) AS i`,
        [orgId, BASE, count],
      );
    await seed(ORG, SEEDED);
    // Same calls' SIDs would not match here (other org, no calls); these rows must simply never show up.
    await t.db.organisations.ensure('listco-neighbour');
    await seed('listco-neighbour', 50);

    all = [];
    for (let page = 0; ; page++) {
      const result = await t.db.recordings.list(ORG, { page, limit: 37 });
      expect(result.total).toBe(SEEDED);
      all.push(...result.rows);
      if (result.rows.length < 37) break;
    }
  });

  test('paging through everything yields each row once, newest first, ties broken by id', () => {
    expect(all).toHaveLength(SEEDED);
    expect(new Set(all.map((r) => r.id)).size).toBe(SEEDED);
    expect(all.every((r) => r.orgId === ORG)).toBe(true);
    const expected = [...all].sort(
      (a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
    );
    expect(all.map((r) => r.id)).toEqual(expected.map((r) => r.id));
    expect(all[0]!.startedAt).toEqual(new Date(BASE.getTime() + ((SEEDED - 1) >> 1) * 60_000));
    expect(all.at(-1)!.startedAt).toEqual(BASE);
  });

  test.each([
    [0, 100, 100],
    [2, 100, 100],
    [3, 100, 0],
    [2, 120, 60],
    [0, 1000, 300],
    [1000, 10, 0],
  ])('page %i of size %i holds %i rows and reports the full total', async (page, limit, expectedRows) => {
    const result = await t.db.recordings.list(ORG, { page, limit });
    expect(result.total).toBe(SEEDED);
    expect(result.rows.map((r) => r.id)).toEqual(all.slice(page * limit, page * limit + limit).map((r) => r.id));
    expect(result.rows).toHaveLength(expectedRows);
  });

  const from = new Date(BASE.getTime() + 50 * 60_000);
  const to = new Date(BASE.getTime() + 100 * 60_000);
  type Predicate = (r: Recording, callSidOf: (r: Recording) => string) => boolean;
  // The last column guards against a vacuous filter case: how many seeded rows the filter must at least match.
  const filters: Array<[string, Omit<ListRecordingsQuery, 'page' | 'limit'>, Predicate, number]> = [
    ['status', { status: 'completed' }, (r) => r.status === 'completed', 100],
    ['source', { source: 'elevenlabs' }, (r) => r.source === 'elevenlabs', 75],
    ['call', { callSid: CALL_SIDS[1]! }, (r, sidOf) => sidOf(r) === CALL_SIDS[1], 90],
    ['date range', { fromDate: from, toDate: to }, (r) => r.startedAt >= from && r.startedAt < to, 100],
    [
      'everything at once',
      { status: 'failed', source: 'livekit', callSid: CALL_SIDS[2]!, fromDate: from },
      (r, sidOf) => r.status === 'failed' && r.source === 'livekit' && sidOf(r) === CALL_SIDS[2] && r.startedAt >= from,
      3,
    ],
    ['a call nobody has', { callSid: 'CA' + 'f'.repeat(32) }, () => false, 0],
  ];

  test.each(filters)('filter by %s matches the same rows in the same order', async (_name, filter, predicate, atLeast) => {
    const callSids = new Map<string, string>();
    for (const sid of CALL_SIDS) callSids.set((await t.db.calls.getByExternalId(ORG, sid))!.id, sid);
    const sidOf = (r: Recording) => callSids.get(r.callId ?? '') ?? '';
    const expected = all.filter((r) => predicate(r, sidOf)).map((r) => r.id);
    expect(expected.length).toBeGreaterThanOrEqual(atLeast);

    const firstPage = await t.db.recordings.list(ORG, { ...filter, page: 0, limit: 25 });
    const secondPage = await t.db.recordings.list(ORG, { ...filter, page: 1, limit: 25 });

    expect(firstPage.total).toBe(expected.length);
    expect(secondPage.total).toBe(expected.length);
    expect([...firstPage.rows, ...secondPage.rows].map((r) => r.id)).toEqual(expected.slice(0, 50));
  });

  test.each([
    ['negative page', { page: -1, limit: 10 }],
    ['fractional page', { page: 1.5, limit: 10 }],
    ['zero limit', { page: 0, limit: 0 }],
    ['limit over the maximum', { page: 0, limit: 1001 }],
    ['unknown status', { page: 0, limit: 10, status: 'done' as never }],
    ['invalid date', { page: 0, limit: 10, fromDate: new Date('nope') }],
  ])('rejects %s with BAD_REQUEST', async (_name, query) => {
    expect(await rejectionOf(t.db.recordings.list(ORG, query))).toMatchObject({ code: 'BAD_REQUEST' });
  });
});
