/**
 * What the hidden participant keeps of a LiveKit room besides its audio, against the real LiveKit server:
 * the room's `lk.transcription` text streams (published with rtc-node the way LiveKit Agents publish them:
 * by the agent for its own speech and on behalf of the user, and by a user itself) as transcript entries,
 * participant and track events as session events, and the room metadata's `conversationId`.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { dispose } from '@livekit/rtc-node';
import { RoomServiceClient } from 'livekit-server-sdk';
import { uniqueName } from '../support/peers.js';
import { livekitPeer, publisher, recordingRows, startTestGateway, until, type Publisher, type TestGateway } from './support.js';

const TOPIC = 'lk.transcription';
const SEGMENT = 'lk.segment_id';
const TRACK = 'lk.transcribed_track_id';
const FINAL = 'lk.transcription_final';

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

async function get(path: string, key = gw.apiKey): Promise<{ status: number; json: any }> {
  const res = await fetch(`${gw.baseUrl}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, json: await res.json() };
}

async function startRecording(room: string): Promise<string> {
  const res = await fetch(`${gw.baseUrl}/livekit/rooms/${encodeURIComponent(room)}/recording`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ enabled: true, stereo: true }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { callId: string }).callId;
}

async function completed(roomSid: string): Promise<void> {
  await until('the room recording to complete', async () => (await recordingRows(gw.databaseUrl)).find((r) => r.call_external_id === roomSid)?.status === 'completed', 30_000);
}

const send = (from: Publisher, text: string, attributes: Record<string, string>) => from.room.localParticipant!.sendText(text, { topic: TOPIC, attributes });

describe('LiveKit transcription streams and room events', () => {
  test('final segments become transcript entries mapped to caller and bot; participants and tracks become session events', async () => {
    const room = uniqueName('lktx');
    const created = await rooms.createRoom({ name: room, metadata: JSON.stringify({ conversationId: 'conv-bistro-42' }) });
    const roomSid = await startRecording(room);
    expect(roomSid).toBe(created.sid);
    const startedAt = Date.now();

    const caller = await publisher(room, 'caller-1', 440);
    const agent = await publisher(room, 'agent-bot', 1_000, { kind: 'agent' });
    const speaking = Promise.all([caller.speak(1.0), agent.speak(1.0)]);
    const transcript = async () => (await get(`/calls/${roomSid}/transcript`)).json.entries as Array<{ text: string; channel: string }>;

    // 1. The user publishes its own transcription (no track named): the caller's, by its sender.
    await send(caller, 'Hello, is this the bistro?', { [SEGMENT]: 'SG_user_1', [FINAL]: 'true' });
    await expect.poll(async () => (await transcript()).map((e) => e.text)).toEqual(['Hello, is this the bistro?']);

    // 2. The agent's own speech as one delta stream, never marked final (as agents-js publishes it).
    const delta = await agent.room.localParticipant!.streamText({ topic: TOPIC, attributes: { [SEGMENT]: 'SG_agent_1', [TRACK]: agent.trackSid, [FINAL]: 'false' } });
    await delta.write('Yes, ');
    await delta.write('how can I help?');
    await delta.close();

    // 3. The user's speech transcribed by the agent, published by the agent naming the user's track: interim
    // updates, then the final one of the same segment.
    await send(agent, 'I would', { [SEGMENT]: 'SG_user_2', [TRACK]: caller.trackSid, [FINAL]: 'false' });
    await send(agent, 'I would like a table', { [SEGMENT]: 'SG_user_2', [TRACK]: caller.trackSid, [FINAL]: 'false' });
    await send(agent, 'I would like a table for two.', { [SEGMENT]: 'SG_user_2', [TRACK]: caller.trackSid, [FINAL]: 'true' });
    // A late repeat of a finalised segment changes nothing.
    await send(agent, 'I would like a table for two. IGNORED', { [SEGMENT]: 'SG_user_2', [TRACK]: caller.trackSid, [FINAL]: 'false' });

    // 3b. The user's speech published by the agent on the user's behalf (senderIdentity) without naming a track.
    const onBehalf = await agent.room.localParticipant!.streamText({ topic: TOPIC, senderIdentity: caller.identity, attributes: { [SEGMENT]: 'SG_user_4', [FINAL]: 'true' } });
    await onBehalf.write('Also a high chair.');
    await onBehalf.close();

    // 4. Interim updates whose final never comes: not stored.
    await send(agent, 'um', { [SEGMENT]: 'SG_user_3', [TRACK]: caller.trackSid, [FINAL]: 'false' });
    await send(agent, 'um so', { [SEGMENT]: 'SG_user_3', [TRACK]: caller.trackSid, [FINAL]: 'false' });

    // 5. The agent's speech as a final stream.
    await send(agent, 'See you at eight.', { [SEGMENT]: 'SG_agent_2', [TRACK]: agent.trackSid, [FINAL]: 'true' });
    await expect.poll(async () => (await transcript()).map((e) => e.text)).toEqual(['Hello, is this the bistro?', 'I would like a table for two.', 'Also a high chair.', 'See you at eight.']);

    // Muted and unmuted by the server, as a moderator would.
    await rooms.mutePublishedTrack(room, caller.identity, caller.trackSid, true);
    const types = async () => ((await get(`/calls/${roomSid}/events`)).json.events as Array<{ type: string }>).map((e) => e.type);
    await expect.poll(types).toContain('track_muted');
    await rooms.mutePublishedTrack(room, caller.identity, caller.trackSid, false);
    await expect.poll(types).toContain('track_unmuted');

    await speaking;
    await agent.leave();
    await caller.leave();
    await completed(roomSid);
    const endedAt = Date.now();

    // The delta stream is stored when the recording ends.
    await expect.poll(async () => (await transcript()).length).toBe(5);
    const final = (await get(`/calls/${roomSid}/transcript`)).json;
    expect(final.conversation_id).toBe('conv-bistro-42');
    expect(final.entries.map((e: any) => ({ channel: e.channel, type: e.type, text: e.text, confidence: e.confidence }))).toEqual([
      { channel: 'caller', type: 'input', text: 'Hello, is this the bistro?', confidence: null },
      { channel: 'bot', type: 'output', text: 'Yes, how can I help?', confidence: null },
      { channel: 'caller', type: 'input', text: 'I would like a table for two.', confidence: null },
      { channel: 'caller', type: 'input', text: 'Also a high chair.', confidence: null },
      { channel: 'bot', type: 'output', text: 'See you at eight.', confidence: null },
    ]);
    const stamps = final.entries.map((e: any) => Date.parse(e.timestamp));
    for (const [i, t] of stamps.entries()) {
      expect(final.entries[i].timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      expect(t).toBeGreaterThanOrEqual(startedAt - 5);
      expect(t).toBeLessThanOrEqual(endedAt);
      // In the order the segments began (ISO strings with microseconds compare as times).
      if (i > 0) expect(final.entries[i].timestamp > final.entries[i - 1].timestamp).toBe(true);
    }
    expect((await get(`/calls/${roomSid}/transcript`, gw.otherOrgApiKey)).status).toBe(404);

    // Session events: who joined and left, their tracks, the mute, each with its time and media position.
    const events = (await get(`/calls/${roomSid}/events`)).json;
    expect(events.conversation_id).toBe('conv-bistro-42');
    const roomEvents = (events.events as any[]).filter((e) => e.type.startsWith('participant_') || e.type.startsWith('track_'));
    const summary = roomEvents.map((e) => `${e.type} ${e.participant} ${e.role}${e.kind ? ` ${e.kind}/${e.track_source}` : ''}`);
    expect(summary).toEqual(
      expect.arrayContaining([
        'participant_joined caller-1 caller',
        'participant_joined agent-bot agent',
        'track_published caller-1 caller audio/microphone',
        'track_published agent-bot agent audio/microphone',
        'track_muted caller-1 caller audio/microphone',
        'track_unmuted caller-1 caller audio/microphone',
        'participant_left agent-bot agent',
        'participant_left caller-1 caller',
      ]),
    );
    const at = (line: string) => summary.indexOf(line);
    expect(at('participant_joined caller-1 caller')).toBeLessThan(at('track_muted caller-1 caller audio/microphone'));
    expect(at('track_muted caller-1 caller audio/microphone')).toBeLessThan(at('track_unmuted caller-1 caller audio/microphone'));
    expect(at('track_unmuted caller-1 caller audio/microphone')).toBeLessThan(at('participant_left agent-bot agent'));
    expect(at('participant_left agent-bot agent')).toBeLessThan(at('participant_left caller-1 caller'));
    const mute = roomEvents.find((e) => e.type === 'track_muted');
    expect(mute.track).toBe(caller.trackSid);
    expect(mute.source).toBe('posted');
    for (const e of roomEvents) {
      expect(e.media_ms).toBeGreaterThanOrEqual(0);
      // Position 0 is when the recording started: an event's position is its time since then.
      expect(Math.abs(Date.parse(e.timestamp) - (Date.parse(events.start_time) + e.media_ms))).toBeLessThan(1_000);
    }
    // Entries appear among the events too, on their channel.
    expect((events.events as any[]).filter((e) => e.type === 'transcript_entry').map((e) => e.channel)).toEqual(['caller', 'bot', 'caller', 'caller', 'bot']);
  });

  test.each([
    { case: 'a string conversationId', metadata: JSON.stringify({ conversationId: 'conv-7' }), expected: 'conv-7' },
    { case: 'no metadata', metadata: '', expected: null },
    { case: 'a conversationId that is not a string', metadata: JSON.stringify({ conversationId: 42 }), expected: null },
  ])('conversation_id from the room metadata ($case), else the room name', async ({ metadata, expected }) => {
    const room = uniqueName('lkconv');
    const created = await rooms.createRoom({ name: room, metadata });
    const roomSid = await startRecording(room);
    const caller = await publisher(room, 'caller-1', 440);
    await caller.speak(0.3);
    await caller.leave();
    await completed(created.sid);
    const res = await get(`/calls/${roomSid}/transcript`);
    expect(res.status).toBe(200);
    expect(res.json.conversation_id).toBe(expected ?? room);
    expect(res.json.entries).toEqual([]);
  });
});
