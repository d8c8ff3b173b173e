/**
 * RoomArtifacts' segment rules with a recording repository and a fixed clock: which streams of a segment
 * become an entry, with which timestamp, and what a failing stream or store does. The real-server path is
 * test/ingest-livekit/transcript.test.ts.
 */
import { describe, expect, test } from 'vitest';
import { RoomArtifacts, type IncomingTextStream } from '../../dist/ingest/livekit/room-artifacts.js';
import { createLogger } from '../../dist/log/index.js';
import { LogCapture } from '../support/gateway.js';

const CALL = '00000000-0000-4000-8000-000000000001';
const T0 = Date.parse('2026-12-03T10:00:00.000Z');

function harness(options: { failWrites?: boolean } = {}) {
  const entries: any[] = [];
  const events: any[] = [];
  let clock = T0;
  const logs = new LogCapture();
  const artifacts = {
    async addTranscriptEntries(callId: string, list: any[]) {
      if (options.failWrites) throw new Error('database away');
      expect(callId).toBe(CALL);
      entries.push(...list);
      return list.length;
    },
    async addEvents(callId: string, list: any[]) {
      expect(callId).toBe(CALL);
      events.push(...list);
      return list.length;
    },
  };
  const room = new RoomArtifacts({
    artifacts: artifacts as any,
    callId: CALL,
    room: 'r1',
    originMs: T0 - 2_000,
    now: () => clock,
    logger: createLogger({ destination: logs }),
    // The track TR_agent is the bot's; everything else the caller's.
    channelOf: (sender, track) => (track === 'TR_agent' || (track === undefined && sender === 'agent') ? 'bot' : 'caller'),
  });
  const stream = (sender: string, attributes: Record<string, string>, text: string | Error): IncomingTextStream => ({
    info: { streamId: `ST_${Math.random()}`, attributes },
    senderIdentity: sender,
    readAll: () => (text instanceof Error ? Promise.reject(text) : Promise.resolve(text)),
  });
  return { room, entries, events, logs, stream, tick: (ms: number) => (clock += ms) };
}

const seg = (id: string, final: boolean, track?: string) => ({
  'lk.segment_id': id,
  'lk.transcription_final': String(final),
  ...(track ? { 'lk.transcribed_track_id': track } : {}),
});

describe('RoomArtifacts', () => {
  test('a final stream is stored at once with the time of its segment\'s first stream; interim and late repeats are not', async () => {
    const h = harness();
    h.room.textStream(h.stream('agent', seg('S1', false, 'TR_user'), 'I'));
    h.tick(300);
    h.room.textStream(h.stream('agent', seg('S1', false, 'TR_user'), 'I want'));
    h.tick(300);
    h.room.textStream(h.stream('agent', seg('S1', true, 'TR_user'), ' I want tea. '));
    h.tick(300);
    h.room.textStream(h.stream('agent', seg('S1', false, 'TR_user'), 'I want tea. again'));
    await expect.poll(() => h.entries.length).toBe(1);
    await h.room.finish();
    expect(h.entries).toEqual([
      { timestamp: '2026-12-03T10:00:00.000000Z', channel: 'caller', type: 'input', text: 'I want tea.', confidence: null, durationMs: null },
    ]);
  });

  test.each([
    { case: 'one non-final stream (a delta stream): stored at the end', streams: [['Hello there', false]], stored: ['Hello there'] },
    { case: 'several non-final streams and no final: nothing', streams: [['um', false], ['um so', false]], stored: [] },
    { case: 'a final stream of only spaces: nothing', streams: [['   ', true]], stored: [] },
  ] as const)('$case', async ({ streams, stored }) => {
    const h = harness();
    for (const [text, final] of streams) h.room.textStream(h.stream('agent', seg('S2', final, 'TR_agent'), text));
    await h.room.finish();
    expect(h.entries.map((e) => [e.channel, e.type, e.text])).toEqual(stored.map((text) => ['bot', 'output', text]));
  });

  test('segments that begin in the same millisecond keep their arrival order, 1 µs apart; the sender names the segment', async () => {
    const h = harness();
    h.room.textStream(h.stream('agent', seg('X', true), 'first'));
    h.room.textStream(h.stream('caller-1', seg('X', true), 'second'));
    h.room.textStream(h.stream('agent', seg('Y', true), 'third'));
    await h.room.finish();
    expect(h.entries.map((e) => [e.timestamp, e.channel, e.text])).toEqual([
      ['2026-12-03T10:00:00.000000Z', 'bot', 'first'],
      ['2026-12-03T10:00:00.000001Z', 'caller', 'second'],
      ['2026-12-03T10:00:00.000002Z', 'bot', 'third'],
    ]);
  });

  test('a stream that fails, attributes that are not strings and a store that fails are logged, not thrown', async () => {
    const h = harness({ failWrites: true });
    h.room.textStream(h.stream('agent', seg('F1', true), new Error('stream reset')));
    h.room.textStream(h.stream('agent', { 'lk.segment_id': '' }, 'bad attributes'));
    h.room.textStream(h.stream('agent', seg('F2', true), 'not stored: the database is away'));
    await h.room.finish();
    expect(h.logs.find('livekit transcription stream failed')).toHaveLength(1);
    expect(h.logs.find('livekit transcription stream attributes invalid')).toHaveLength(1);
    expect(h.logs.find('livekit room artifact not stored')).toMatchObject([{ what: 'transcript entry', code: 'INTERNAL' }]);
    expect(JSON.stringify(h.logs.lines)).not.toContain('not stored: the database is away');
  });

  test('events carry their media position (ms since the recording started); nothing is kept after finish', async () => {
    const h = harness();
    h.room.event('participant_joined', { participant: 'caller-1', role: 'caller' });
    h.tick(1_500);
    h.room.event('track_muted', { participant: 'caller-1', role: 'caller', track: 'TR_user' });
    await h.room.finish();
    h.room.event('participant_left', { participant: 'caller-1', role: 'caller' });
    h.room.textStream(h.stream('caller-1', seg('late', true), 'too late'));
    await h.room.finish();
    expect(h.events).toEqual([
      { timestamp: '2026-12-03T10:00:00.000Z', type: 'participant_joined', mediaMs: 2_000, data: { participant: 'caller-1', role: 'caller' } },
      { timestamp: '2026-12-03T10:00:01.500Z', type: 'track_muted', mediaMs: 3_500, data: { participant: 'caller-1', role: 'caller', track: 'TR_user' } },
    ]);
    expect(h.entries).toEqual([]);
  });
});
