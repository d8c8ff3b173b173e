/**
 * A LiveKit room's call is tagged with the user its (non-agent) participant names — a `userId` participant
 * attribute, or `userId` in the participant's metadata — so an API key bound to that user sees its recording
 * and a key bound to another user does not. Against the real LiveKit server.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { dispose } from '@livekit/rtc-node';
import { RoomServiceClient } from 'livekit-server-sdk';
import { participantUserId } from '../../dist/ingest/livekit/room-participant.js';
import { uniqueName } from '../support/peers.js';
import { livekitPeer, publisher, recordingRows, startTestGateway, until, type TestGateway } from './support.js';

const peer = livekitPeer();
const rooms = new RoomServiceClient(peer.url.replace('ws://', 'http://'), peer.apiKey, peer.apiSecret);
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.stop();
  await dispose();
});

async function recordedRoom(identity: string, extra: { metadata?: string; attributes?: Record<string, string> }): Promise<string> {
  const room = uniqueName('user');
  const created = await rooms.createRoom({ name: room });
  const res = await fetch(`${gw.baseUrl}/livekit/rooms/${room}/recording`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ enabled: true }),
  });
  expect(res.status).toBe(201);
  const caller = await publisher(room, identity, 440, extra);
  await caller.speak(1.0);
  await caller.leave();
  await until(
    'the room recording to complete',
    async () => ((await recordingRows(gw.databaseUrl)).find((r) => r.call_external_id === created.sid)?.status === 'completed' ? true : null),
    30_000,
  );
  return created.sid;
}

async function listedCalls(key: string): Promise<string[]> {
  const res = await fetch(`${gw.baseUrl}/api/call-recordings?limit=100`, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { recordings: { callSid: string }[] }).recordings.map((r) => r.callSid);
}

test('a participant attribute or metadata userId tags the room call; user-bound keys see only their user’s', async () => {
  const byAttribute = await recordedRoom('caller-attr', { attributes: { userId: 'lk-u1' } });
  const byMetadata = await recordedRoom('caller-meta', { metadata: JSON.stringify({ userId: 'lk-u2' }) });
  const untagged = await recordedRoom('caller-none', {});
  const call = (sid: string) => gw.gateway.db.calls.getByExternalId(gw.org, sid, 'livekit');
  expect((await call(byAttribute))?.metadata).toMatchObject({ userId: 'lk-u1' });
  expect((await call(byMetadata))?.metadata).toMatchObject({ userId: 'lk-u2' });
  expect((await call(untagged))?.metadata['userId']).toBeUndefined();

  const u1 = (await gw.gateway.db.apiKeys.create(gw.org, { scopes: ['read'], userId: 'lk-u1' })).key;
  const u2 = (await gw.gateway.db.apiKeys.create(gw.org, { scopes: ['read'], userId: 'lk-u2' })).key;
  expect(await listedCalls(u1)).toEqual([byAttribute]);
  expect(await listedCalls(u2)).toEqual([byMetadata]);
  expect(await listedCalls(gw.apiKey)).toEqual(expect.arrayContaining([byAttribute, byMetadata, untagged]));
  const res = await fetch(`${gw.baseUrl}/calls/${byAttribute}/recording`, { headers: { authorization: `Bearer ${u2}` } });
  expect(res.status).toBe(404);
});

test.each([
  ['a userId attribute', { attributes: { userId: 'u1' }, metadata: '' }, 'u1'],
  ['the attribute over the metadata', { attributes: { userId: 'u1' }, metadata: '{"userId":"u2"}' }, 'u1'],
  ['userId in JSON metadata', { attributes: {}, metadata: '{"userId":"u2","recording":{"enabled":true}}' }, 'u2'],
  ['plain-text metadata', { attributes: {}, metadata: 'userId=u3' }, undefined],
  ['a userId that is not an id', { attributes: { userId: 'has spaces' }, metadata: '{"userId":42}' }, undefined],
  ['nothing', { attributes: {}, metadata: '' }, undefined],
])('participantUserId: %s', (_name, participant, expected) => {
  expect(participantUserId(participant)).toBe(expected);
});
