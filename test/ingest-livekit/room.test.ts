/**
 * Room participant mode against the real LiveKit server: test participants publish known tones with
 * rtc-node, the gateway joins as a hidden subscriber, and the decrypted recording is checked for which
 * tone is in which channel, silence where a participant was absent or muted, and its duration.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { dispose } from '@livekit/rtc-node';
import { AccessToken, RoomServiceClient } from 'livekit-server-sdk';
import { generateTone, toneAmplitude } from '../support/audio.js';
import { uniqueName } from '../support/peers.js';
import {
  PUBLISHED_AMPLITUDE as AMPLITUDE,
  decryptRecording,
  livekitPeer,
  publisher, recordingRows, rmsIn, startTestGateway, toneIn, until, type Publisher, type TestGateway } from './support.js';

const CALLER_HZ = 440;
const AGENT_HZ = 1_000;
/** Join, subscription and jitter-buffer delay between capture and the gateway: generous but bounded. */
const MAX_DELIVERY_S = 0.6;

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

/** Seconds from the start of `channel` to the first 20 ms window carrying the tone. */
function onset(channel: Int16Array, sampleRate: number, frequency: number): number {
  const win = sampleRate / 50;
  for (let i = 0; i + win <= channel.length; i += win / 4) {
    if (toneAmplitude(channel.subarray(i, i + win), sampleRate, frequency) > AMPLITUDE / 2) return i / sampleRate;
  }
  return Number.POSITIVE_INFINITY;
}

async function completedRecording(roomSid: string) {
  return until(
    'the room recording to complete',
    async () => {
      const row = (await recordingRows(gw.databaseUrl)).find((r) => r.call_external_id === roomSid);
      return row?.status === 'completed' ? row : null;
    },
    30_000,
  );
}

async function api(method: string, room: string, key: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${gw.baseUrl}/livekit/rooms/${encodeURIComponent(room)}/recording`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() };
}

describe('LiveKit room participant mode', () => {
  test.each([
    { case: 'agent marked by participant kind', agentByKind: true, metadata: '', request: {} },
    { case: 'agent named by the room metadata', agentByKind: false, metadata: JSON.stringify({ agentIdentity: 'agent-bot' }), request: {} },
    // The API request's agentIdentity wins over the room metadata's.
    { case: 'agent named by the API request', agentByKind: false, metadata: JSON.stringify({ agentIdentity: 'caller-1' }), request: { agentIdentity: 'agent-bot' } },
  ])('records a caller and a late agent, with the caller muted for a while ($case)', async ({ agentByKind, metadata, request }) => {
    const room = uniqueName('api');
    const created = await rooms.createRoom({ name: room, metadata });

    expect((await api('POST', room, gw.otherOrgApiKey, { enabled: true })).status).toBe(404);
    const started = await api('POST', room, gw.apiKey, { enabled: true, stereo: true, ...request });
    expect(started.status).toBe(201);
    expect(started.json).toEqual({ callId: created.sid, recordingSid: expect.stringMatching(/^CR[0-9a-f]{32}$/) });
    expect((await api('POST', room, gw.apiKey, {})).status).toBe(409);

    const caller = await publisher(room, 'caller-1', CALLER_HZ);
    // One uninterrupted 5 s tone from the caller; the agent joins after 1 s, the caller is muted from 2 s to 3 s.
    let agent: Publisher | undefined;
    let agentSpeaking: Promise<number> | undefined;
    // Each mute is bracketed: asked for at *RequestedAt, confirmed by the server at *At. On a loaded machine the
    // two can be far apart, so audio is expected up to the request and silence only from the confirmation.
    let agentJoinRequestedAt = 0;
    let muteRequestedAt = 0;
    let mutedAt = 0;
    let unmuteRequestedAt = 0;
    let unmutedAt = 0;
    const cues: Promise<unknown>[] = [];
    const callerStart = await caller.speak(5.0, [
      {
        atS: 1.0,
        run: () => {
          agentJoinRequestedAt = Date.now();
          cues.push(
            publisher(room, 'agent-bot', AGENT_HZ, agentByKind ? { kind: 'agent' } : {}).then((joined) => {
              agent = joined;
              agentSpeaking = joined.speak(2.5);
            }),
          );
        },
      },
      {
        atS: 2.0,
        run: () => {
          muteRequestedAt = Date.now();
          cues.push(rooms.mutePublishedTrack(room, caller.identity, caller.trackSid, true).then(() => (mutedAt = Date.now())));
        },
      },
      {
        atS: 3.0,
        run: () => {
          unmuteRequestedAt = Date.now();
          cues.push(rooms.mutePublishedTrack(room, caller.identity, caller.trackSid, false).then(() => (unmutedAt = Date.now())));
        },
      },
    ]);
    const callerEndAt = Date.now();
    await Promise.all(cues);
    const agentStart = await agentSpeaking!;
    const lastAudioAt = Date.now();
    await agent!.leave();
    await caller.leave();

    // The last participant left: the recording finishes by itself.
    const row = await completedRecording(created.sid);
    expect(row.recording_sid).toBe(started.json.recordingSid);
    expect(row.channels).toBe(2);
    const origin = row.started_at.getTime();
    const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
    const [left, right] = channels as [Int16Array, Int16Array];
    const rel = (wall: number): number => (wall - origin) / 1000;

    // Absent until they joined: each tone starts when its participant started speaking, not earlier.
    const callerOnset = onset(left, sampleRate, CALLER_HZ);
    const agentOnset = onset(right, sampleRate, AGENT_HZ);
    expect(callerOnset).toBeGreaterThanOrEqual(rel(callerStart) - 0.05);
    expect(callerOnset).toBeLessThanOrEqual(rel(callerStart) + MAX_DELIVERY_S);
    expect(agentOnset).toBeGreaterThanOrEqual(rel(agentStart) - 0.05);
    expect(agentOnset).toBeLessThanOrEqual(rel(agentStart) + MAX_DELIVERY_S);
    expect(rmsIn(right, sampleRate, 0, agentOnset - 0.05)).toBeLessThan(AMPLITUDE * 0.01);

    // Channel mapping: caller left, agent right, nothing crossing over.
    // The caller alone, before the agent joins: the join (a second rtc-node connection in this same test process)
    // can starve the test's own publisher for a moment, and what it then fails to send is silence in the room.
    expect(toneIn(left, sampleRate, CALLER_HZ, callerOnset + 0.1, rel(Math.min(agentJoinRequestedAt, muteRequestedAt)) - 0.1)).toBeGreaterThan(AMPLITUDE * 0.6);
    expect(toneIn(right, sampleRate, AGENT_HZ, agentOnset + 0.1, agentOnset + 2.5)).toBeGreaterThan(AMPLITUDE * 0.6);
    expect(toneIn(left, sampleRate, AGENT_HZ, agentOnset, agentOnset + 2.5)).toBeLessThan(AMPLITUDE * 0.01);
    expect(toneIn(right, sampleRate, CALLER_HZ, callerOnset, callerOnset + 3.5)).toBeLessThan(AMPLITUDE * 0.01);

    // Muted: silence in the caller's channel, then the tone again after the unmute, on the same timeline.
    expect(rmsIn(left, sampleRate, rel(mutedAt) + MAX_DELIVERY_S / 2, rel(unmuteRequestedAt) - 0.05)).toBeLessThan(AMPLITUDE * 0.01);
    expect(toneIn(left, sampleRate, CALLER_HZ, rel(unmutedAt) + MAX_DELIVERY_S, rel(callerEndAt) - 0.1)).toBeGreaterThan(AMPLITUDE * 0.6);

    // Duration: from the start of the recording to the end of the last audio.
    const durationS = Number(row.duration_ms) / 1000;
    expect(durationS).toBeGreaterThanOrEqual(rel(lastAudioAt) - 0.2);
    expect(durationS).toBeLessThanOrEqual(rel(lastAudioAt) + MAX_DELIVERY_S);
    expect(Math.abs(left.length / sampleRate - durationS)).toBeLessThan(0.02);
  });

  test('the API stops a recording; stopping a room that is not recording is 404', async () => {
    const room = uniqueName('stop');
    const created = await rooms.createRoom({ name: room });
    expect((await api('POST', room, gw.apiKey, { stereo: false })).status).toBe(201);
    const caller = await publisher(room, 'caller-1', CALLER_HZ);
    await caller.speak(1.0);
    const stopped = await api('DELETE', room, gw.apiKey);
    expect(stopped.status).toBe(200);
    expect(stopped.json).toMatchObject({ callId: created.sid, status: 'completed' });
    await caller.leave();
    expect((await api('DELETE', room, gw.apiKey)).status).toBe(404);
    const row = await completedRecording(created.sid);
    expect(row.channels).toBe(1);
    const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
    const callerOnset = onset(channels[0]!, sampleRate, CALLER_HZ);
    expect(toneIn(channels[0]!, sampleRate, CALLER_HZ, callerOnset + 0.1, callerOnset + 0.5)).toBeGreaterThan(AMPLITUDE * 0.6);
  });
});

describe('POST /livekit/webhook', () => {
  test("starts recording when a participant's metadata asks for it, with its options over the room's", async () => {
    const prefix = uniqueName('wh');
    await fetch(`${peer.webhookRelayUrl}/targets`, { method: 'POST', body: JSON.stringify({ prefix, url: `${gw.baseUrl}/livekit/webhook` }) });
    try {
      const room = `${prefix}-room`;
      const created = await rooms.createRoom({ name: room, metadata: JSON.stringify({ options: { recording: { enabled: false, stereo: true } } }) });
      const caller = await publisher(room, 'caller-1', CALLER_HZ, { metadata: JSON.stringify({ recording: { enabled: true, stereo: false } }) });
      await until('the webhook to start the recording', async () => (await recordingRows(gw.databaseUrl)).some((r) => r.call_external_id === created.sid));
      await caller.speak(1.5);
      await caller.leave();
      const row = await completedRecording(created.sid);
      expect(row.channels).toBe(1);
      expect(row.metadata).toMatchObject({ trigger: 'webhook', room, roomSid: created.sid });
      const { channels, sampleRate } = await decryptRecording(row, gw.masterKey);
      const callerOnset = onset(channels[0]!, sampleRate, CALLER_HZ);
      expect(toneIn(channels[0]!, sampleRate, CALLER_HZ, callerOnset + 0.1, callerOnset + 1.0)).toBeGreaterThan(AMPLITUDE * 0.6);
    } finally {
      await fetch(`${peer.webhookRelayUrl}/targets?prefix=${encodeURIComponent(prefix)}`, { method: 'DELETE' });
    }
  });

  test.each([
    { case: 'no signature', auth: async () => '' },
    {
      case: 'a signature from another secret',
      auth: async () => {
        const token = new AccessToken(peer.apiKey, 'x'.repeat(40));
        token.sha256 = 'AAAA';
        return token.toJwt();
      },
    },
  ])('refuses a webhook with $case (401) and records nothing', async ({ auth }) => {
    const rowsBefore = (await recordingRows(gw.databaseUrl)).length;
    const body = JSON.stringify({ event: 'room_started', room: { sid: 'RM_forged', name: 'forged', metadata: '{"recording":{"enabled":true}}' } });
    const res = await fetch(`${gw.baseUrl}/livekit/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/webhook+json', authorization: await auth() },
      body,
    });
    expect(res.status).toBe(401);
    expect((await recordingRows(gw.databaseUrl)).length).toBe(rowsBefore);
  });
});
