import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openTestDatabase, rejectionOf, type TestDatabase } from './support.js';

let t: TestDatabase;
const at = (iso: string) => new Date(iso);

beforeAll(async () => {
  t = await openTestDatabase();
  await t.db.organisations.ensure('acme');
  await t.db.organisations.ensure('globex');
});

afterAll(async () => {
  await t?.dispose();
});

describe('calls', () => {
  test.each([
    ['twilio', 'CA0123456789abcdef0123456789abcdef'],
    ['livekit', 'RM_a1b2c3d4e5f6'],
  ] as const)('a %s call starts active and can be found by its external id', async (source, externalId) => {
    const call = await t.db.calls.upsertActive({
      orgId: 'acme',
      source,
      externalId,
      startedAt: at('2024-05-01T10:00:00.000Z'),
      metadata: { from: '+15550100' },
    });

    expect(call).toMatchObject({
      orgId: 'acme',
      source,
      externalId,
      status: 'active',
      startedAt: at('2024-05-01T10:00:00.000Z'),
      endedAt: null,
      metadata: { from: '+15550100' },
    });
    expect(await t.db.calls.getByExternalId('acme', externalId)).toEqual(call);
    expect(await t.db.calls.getByExternalId('acme', externalId, source)).toEqual(call);
    expect(await t.db.calls.get('acme', call.id)).toEqual(call);
  });

  test('end is idempotent and keeps the first end time; a reconnect re-activates the same call', async () => {
    const externalId = 'CA11111111111111111111111111111111';
    const started = await t.db.calls.upsertActive({
      orgId: 'acme',
      source: 'twilio',
      externalId,
      startedAt: at('2024-05-01T10:00:00.000Z'),
      metadata: { leg: 'first', from: '+15550100' },
    });

    const ended = await t.db.calls.end(started.id, at('2024-05-01T10:05:00.000Z'));
    expect(ended).toMatchObject({ id: started.id, status: 'ended', endedAt: at('2024-05-01T10:05:00.000Z') });
    const endedAgain = await t.db.calls.end(started.id, at('2024-05-01T10:09:00.000Z'));
    expect(endedAgain.endedAt).toEqual(at('2024-05-01T10:05:00.000Z'));

    const resumed = await t.db.calls.upsertActive({
      orgId: 'acme',
      source: 'twilio',
      externalId,
      startedAt: at('2024-05-01T10:06:00.000Z'),
      metadata: { leg: 'second' },
    });
    expect(resumed).toMatchObject({
      id: started.id,
      status: 'active',
      endedAt: null,
      startedAt: at('2024-05-01T10:00:00.000Z'),
      metadata: { leg: 'second', from: '+15550100' },
    });
    expect(resumed.updatedAt.getTime()).toBeGreaterThanOrEqual(started.updatedAt.getTime());
  });

  test('ending an unknown call is NOT_FOUND', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'nope']) {
      expect(await rejectionOf(t.db.calls.end(id, new Date()))).toMatchObject({ code: 'NOT_FOUND' });
    }
  });

  test('the same external id in two organisations is two calls, each invisible to the other', async () => {
    const externalId = 'CA22222222222222222222222222222222';
    const startedAt = at('2024-05-02T09:00:00.000Z');
    const acme = await t.db.calls.upsertActive({ orgId: 'acme', source: 'twilio', externalId, startedAt });
    const globex = await t.db.calls.upsertActive({ orgId: 'globex', source: 'twilio', externalId, startedAt });

    expect(globex.id).not.toBe(acme.id);
    expect(acme.metadata).toEqual({});
    expect((await t.db.calls.getByExternalId('acme', externalId))?.id).toBe(acme.id);
    expect((await t.db.calls.getByExternalId('globex', externalId))?.id).toBe(globex.id);
    expect(await t.db.calls.get('globex', acme.id)).toBeNull();
    expect(await t.db.calls.get('acme', globex.id)).toBeNull();
    expect(await t.db.calls.getByExternalId('initech', externalId)).toBeNull();
    expect(await t.db.calls.get('acme', 'not-a-uuid')).toBeNull();
  });
});

describe('media streams of a call', () => {
  const claim = (externalId: string, streamSid: string) =>
    t.db.calls.claimStream({ orgId: 'acme', source: 'twilio', externalId, streamSid, startedAt: at('2024-05-01T10:00:00.000Z'), metadata: { accountSid: 'AC1' } });

  test('concurrent starts of one streamSid: exactly one is registered, and it is the primary', async () => {
    const callSid = 'CA11111111111111111111111111111111';
    const results = await Promise.all(Array.from({ length: 8 }, () => claim(callSid, 'MZ00000000000000000000000000000001')));
    const registered = results.filter((r) => r !== null);
    expect(registered).toHaveLength(1);
    expect(registered[0]).toMatchObject({ primary: true, call: { status: 'active', metadata: { primaryStreamSid: 'MZ00000000000000000000000000000001' } } });
  });

  test('a later stream is registered but not primary, and leaves an ended call ended', async () => {
    const callSid = 'CA22222222222222222222222222222222';
    const first = await claim(callSid, 'MZ00000000000000000000000000000002');
    await t.db.calls.end(first!.call.id, at('2024-05-01T10:05:00.000Z'));
    const later = await claim(callSid, 'MZ00000000000000000000000000000003');
    expect(later).toMatchObject({
      primary: false,
      call: {
        id: first!.call.id,
        status: 'ended',
        endedAt: at('2024-05-01T10:05:00.000Z'),
        metadata: { primaryStreamSid: 'MZ00000000000000000000000000000002', streamSids: ['MZ00000000000000000000000000000002', 'MZ00000000000000000000000000000003'] },
      },
    });
    expect(await claim(callSid, 'MZ00000000000000000000000000000002')).toBeNull();
    expect(await claim(callSid, 'MZ00000000000000000000000000000003')).toBeNull();
  });
});
