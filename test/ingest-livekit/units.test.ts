import { describe, expect, test } from 'vitest';
import {
  EventLoopWatch,
  TrackTimeline,
  signEgressUrl,
  verifyEgressQuery,
  resolveRecordingOptions,
  roomRecordingOptions,
  participantRecordingOptions,
  agentIdentitiesOf,
  agentIdentitiesWith,
  agentPolicyCandidates,
  agentPolicyOf,
  namedAgentIdentities,
} from '../../dist/ingest/livekit/index.js';

const RATE = 48_000;
const FRAME = 480; // 10 ms

describe('TrackTimeline', () => {
  test('anchors the first frame on wall time and keeps later frames contiguous despite jitter', () => {
    const timeline = new TrackTimeline({ originMs: 1_000, sampleRate: RATE, gapThresholdMs: 200 });
    const arrivals = [1_250, 1_262, 1_268, 1_300, 1_301, 1_302];
    const positions = arrivals.map((at) => timeline.place(at, FRAME));
    expect(positions).toEqual([0, 1, 2, 3, 4, 5].map((i) => 12_000 + i * FRAME));
  });

  test.each([
    { case: 'a gap longer than the threshold', gapMs: 1_000, explicitBreak: false, expected: (1_000 + 10 + 1_000) * 48 },
    { case: 'a mute event even without a gap', gapMs: 150, explicitBreak: true, expected: (1_000 + 10 + 150) * 48 },
    { case: 'a short gap (jitter) without an event', gapMs: 150, explicitBreak: false, expected: 2 * FRAME },
  ])('re-anchors on wall time after $case', ({ gapMs, explicitBreak, expected }) => {
    const timeline = new TrackTimeline({ originMs: 0, sampleRate: RATE, gapThresholdMs: 200 });
    expect(timeline.place(1_000, FRAME)).toBe(48_000);
    expect(timeline.place(1_010, FRAME)).toBe(48_000 + FRAME);
    if (explicitBreak) timeline.breakContinuity();
    const position = timeline.place(1_010 + gapMs, FRAME);
    expect(position).toBe(explicitBreak || gapMs > 200 ? expected : 48_000 + expected);
  });

  test('never re-anchors backwards onto audio already placed', () => {
    const timeline = new TrackTimeline({ originMs: 0, sampleRate: RATE, gapThresholdMs: 200 });
    // A burst: one second of audio arrives at once, then the track is broken right away.
    for (let i = 0; i < 100; i++) timeline.place(0, FRAME);
    timeline.breakContinuity();
    expect(timeline.place(100, FRAME)).toBe(100 * FRAME);
  });

  test('clamps frames that arrived before the recording started to position 0', () => {
    const timeline = new TrackTimeline({ originMs: 5_000, sampleRate: 16_000 });
    expect(timeline.place(4_000, 160)).toBe(0);
    expect(timeline.place(5_010, 160)).toBe(160);
  });
});

/** A watch the test drives: one clock for arrivals and the loop, and the stalls the test says happened. */
function drivenLoop(): { clock: { now: number }; stalls: Array<[number, number]>; loop: { now(): number; stalledMs(from: number, to: number): number } } {
  const clock = { now: 0 };
  const stalls: Array<[number, number]> = [];
  return {
    clock,
    stalls,
    loop: {
      now: () => clock.now,
      stalledMs: (from, to) => stalls.reduce((sum, [start, end]) => sum + Math.max(0, Math.min(end, to) - Math.max(start, from)), 0),
    },
  };
}

describe('TrackTimeline with an event-loop watch', () => {
  /** 20 ms frames arriving at `at` on the shared clock. */
  const FRAME_20MS = 960;
  const arrive = (timeline: TrackTimeline, clock: { now: number }, at: number): number => {
    clock.now = at;
    return timeline.place(at, FRAME_20MS);
  };

  test.each([
    // Sender in real time; our loop stalls 800 ms and the audio it sent meanwhile arrives as a burst afterwards.
    { case: 'a stall of our own loop (the burst after it stays contiguous)', stall: [1_020, 1_820] as [number, number], resumeAt: 1_820, expectedMs: 1_020 },
    // The sender stops for 1 s while our loop runs: re-anchored on wall time, as without a watch.
    { case: 'a genuine gap while the loop ran (re-anchored on wall time)', stall: null, resumeAt: 2_020, expectedMs: 2_020 },
    // The sender stops for 1 s, then our loop stalls 600 ms just as it resumes: the silence is the sender's 1 s.
    { case: 'a genuine gap followed by a shorter stall (re-anchored by the gap only)', stall: [2_020, 2_620] as [number, number], resumeAt: 2_620, expectedMs: 2_020 },
  ])('$case', ({ stall, resumeAt, expectedMs }) => {
    const { clock, stalls, loop } = drivenLoop();
    const timeline = new TrackTimeline({ originMs: 0, sampleRate: RATE, gapThresholdMs: 500, loop });
    for (let at = 0; at <= 1_000; at += 20) expect(arrive(timeline, clock, at)).toBe((at * RATE) / 1000);
    if (stall) stalls.push(stall);
    const resumed = arrive(timeline, clock, resumeAt);
    expect(resumed).toBe((expectedMs * RATE) / 1000);
    // The rest of the burst follows contiguously.
    expect(arrive(timeline, clock, resumeAt)).toBe(resumed + FRAME_20MS);
  });

  test('mute and unmute still anchor on wall time, stall or not', () => {
    const { clock, stalls, loop } = drivenLoop();
    const timeline = new TrackTimeline({ originMs: 0, sampleRate: RATE, gapThresholdMs: 500, loop });
    arrive(timeline, clock, 1_000);
    stalls.push([1_020, 1_820]);
    timeline.breakContinuity();
    expect(arrive(timeline, clock, 1_820)).toBe(1_820 * 48);
  });
});

describe('EventLoopWatch', () => {
  test('counts a stall of the event loop while it is still in progress, and after it', async () => {
    const watch = new EventLoopWatch({ periodMs: 10 });
    const release = watch.retain();
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const from = watch.now();
      const until = from + 300;
      while (watch.now() < until) {
        // Busy: the loop does not run.
      }
      const during = watch.stalledMs(from, watch.now());
      expect(during).toBeGreaterThanOrEqual(280);
      expect(during).toBeLessThanOrEqual(310);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const after = watch.stalledMs(from, watch.now());
      expect(after).toBeGreaterThanOrEqual(280);
      expect(after).toBeLessThanOrEqual(330);
      // An interval in which the loop ran has no stall worth counting (timer lateness only).
      const quiet = watch.now();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(watch.stalledMs(quiet, watch.now())).toBeLessThan(50);
    } finally {
      release();
    }
    expect(watch.watching).toBe(false);
  });
});

/** Flips a spare bit of the last character of a 43-character base64url MAC: same bytes, another text. */
function respellLast(sig: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const respelled = `${sig.slice(0, -1)}${alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1]}`;
  expect(respelled).not.toBe(sig);
  expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
  return respelled;
}

describe('egress URL signing', () => {
  const masterKey = new Uint8Array(32).fill(7);
  const otherKey = new Uint8Array(32).fill(9);
  const now = Date.UTC(2026, 0, 1);
  const target = { room: 'support room/1', participant: 'caller@example', track: 'TR_abc', role: 'agent' as const, sampleRate: 48_000 };

  const signed = () => new URL(signEgressUrl('https://gw.example.com', target, { masterKey, expiresAtMs: now + 60_000 }));

  test('round-trips the target through a wss URL on the egress path', () => {
    const url = signed();
    expect(url.protocol).toBe('wss:');
    expect(url.pathname).toBe('/livekit/egress');
    const verified = verifyEgressQuery(url.searchParams, [otherKey, masterKey], now);
    expect(verified).toMatchObject({ ...target, expiresAt: now + 60_000 });
  });

  test.each([
    { case: 'unsigned', mutate: (q: URLSearchParams) => q.delete('sig'), at: now },
    { case: 'a changed participant', mutate: (q: URLSearchParams) => q.set('participant', 'someone-else'), at: now },
    { case: 'a changed role', mutate: (q: URLSearchParams) => q.set('role', 'caller'), at: now },
    { case: 'a later expiry', mutate: (q: URLSearchParams) => q.set('exp', String(Math.floor(now / 1000) + 3600)), at: now },
    { case: 'expired', mutate: () => undefined, at: now + 60_000 },
    // The 43rd base64url character holds 4 bits of the MAC and 2 spare ones: another spelling of the same bytes.
    { case: 'the signature respelled in its last character', mutate: (q: URLSearchParams) => q.set('sig', respellLast(q.get('sig')!)), at: now },
  ])('refuses $case with SIGNATURE_INVALID', ({ mutate, at }) => {
    const query = signed().searchParams;
    mutate(query);
    expect(() => verifyEgressQuery(query, [masterKey], at)).toThrowError(expect.objectContaining({ code: 'SIGNATURE_INVALID' }));
  });

  test('refuses a URL signed with a key not in the keyring', () => {
    expect(() => verifyEgressQuery(signed().searchParams, [otherKey], now)).toThrowError(
      expect.objectContaining({ code: 'SIGNATURE_INVALID' }),
    );
  });
});

describe('recording options precedence', () => {
  const defaults = { enabled: true, stereo: true };
  const roomMeta = JSON.stringify({ agentIdentity: 'agent-7', options: { recording: { enabled: true, stereo: false } } });

  test.each([
    { case: 'server default only', room: undefined, participant: undefined, expected: { enabled: true, stereo: true }, requested: false },
    { case: 'agent-level options over default', room: roomMeta, participant: undefined, expected: { enabled: true, stereo: false }, requested: true },
    {
      case: 'participant metadata over agent-level options',
      room: roomMeta,
      participant: JSON.stringify({ recording: { enabled: true, stereo: true } }),
      expected: { enabled: true, stereo: true },
      requested: true,
    },
    {
      case: 'participant disabling over an enabled room',
      room: roomMeta,
      participant: JSON.stringify({ recording: { enabled: false } }),
      expected: { enabled: false, stereo: false },
      requested: true,
    },
  ])('$case', ({ room, participant, expected, requested }) => {
    const resolved = resolveRecordingOptions({
      defaults,
      room: roomRecordingOptions(room),
      participant: participantRecordingOptions(participant),
    });
    expect(resolved.options).toEqual(expected);
    expect(resolved.requested).toBe(requested);
  });

  const KEY = 'agent-policy-client-key';
  test.each([
    { case: 'agent policy over the server default', room: undefined, participant: undefined, request: undefined, expected: { enabled: true, stereo: false, key: KEY } },
    {
      case: 'room metadata over the agent policy',
      room: JSON.stringify({ options: { recording: { enabled: true, stereo: true } } }),
      participant: undefined,
      request: undefined,
      expected: { enabled: true, stereo: true, key: KEY },
    },
    {
      case: 'participant metadata over the agent policy',
      room: undefined,
      participant: JSON.stringify({ recording: { enabled: false } }),
      request: undefined,
      expected: { enabled: false, stereo: false, key: KEY },
    },
    { case: 'request over the agent policy', room: undefined, participant: undefined, request: { stereo: true }, expected: { enabled: true, stereo: true, key: KEY } },
  ])('agent layer: $case', ({ room, participant, request, expected }) => {
    const resolved = resolveRecordingOptions({
      defaults,
      agent: { enabled: true, stereo: false, key: KEY },
      room: roomRecordingOptions(room),
      participant: participantRecordingOptions(participant),
      request,
    });
    expect(resolved.options).toEqual(expected);
  });

  const ROOM_NAMES = JSON.stringify({ agentIdentity: 'meta-agent', options: { recording: { enabled: true } } });
  test.each([
    { case: 'the request over everything', request: 'req-agent', participant: 'part-agent', room: 'room-agent', expected: ['req-agent'] },
    { case: 'participant metadata over the room', request: undefined, participant: 'part-agent', room: 'room-agent', expected: ['part-agent'] },
    { case: "the room's recording options over its top-level agentIdentity", request: undefined, participant: undefined, room: 'room-agent', expected: ['room-agent'] },
    { case: 'the room metadata agentIdentity when no option names one', request: undefined, participant: undefined, room: undefined, expected: ['meta-agent'] },
  ])('agentIdentity option: $case', ({ request, participant, room, expected }) => {
    const roomMetadata = room ? JSON.stringify({ agentIdentity: 'meta-agent', options: { recording: { enabled: true, agentIdentity: room } } }) : ROOM_NAMES;
    const named = namedAgentIdentities({
      roomMetadata,
      room: roomRecordingOptions(roomMetadata),
      participant: participantRecordingOptions(participant ? JSON.stringify({ recording: { enabled: true, agentIdentity: participant } }) : undefined),
      request: request ? { agentIdentity: request } : undefined,
    });
    expect([...named]).toEqual(expected);
    // A named identity wins over the one the agent policy names.
    expect([...agentIdentitiesWith(named, { agentIdentity: 'policy-agent' })]).toEqual(expected);
  });

  test("agentIdentity option: the agent policy's, when nothing else names one; the policy is found by the room's agentId", async () => {
    const roomMetadata = JSON.stringify({ agentId: 'support-bot', options: { recording: { enabled: true } } });
    const named = namedAgentIdentities({ roomMetadata, room: roomRecordingOptions(roomMetadata) });
    expect(named.size).toBe(0);
    const candidates = agentPolicyCandidates(roomMetadata, named);
    expect(candidates).toEqual(['support-bot']);
    const policy = await agentPolicyOf(candidates, async (id) => (id === 'support-bot' ? { enabled: true, agentIdentity: 'support-bot-7' } : undefined));
    expect([...agentIdentitiesWith(named, policy)]).toEqual(['support-bot-7']);
    expect([...agentIdentitiesWith(named, undefined)]).toEqual([]);
    // The option is validated like any other: an empty identity is refused.
    expect(() => participantRecordingOptions(JSON.stringify({ recording: { enabled: true, agentIdentity: '' } }))).toThrow();
  });

  test('an agent policy alone does not ask for a recording (the default alone never starts one either)', () => {
    expect(resolveRecordingOptions({ defaults, agent: { enabled: true } }).requested).toBe(false);
    expect(resolveRecordingOptions({ defaults: { enabled: true }, agent: { enabled: false } }).options.enabled).toBe(false);
  });

  test('the first of the room agent identities that has a policy supplies it', async () => {
    const policies = new Map([
      ['agent-b', { enabled: false }],
      ['agent-c', { enabled: true, stereo: true }],
    ]);
    const asked: string[] = [];
    const policyOf = async (id: string) => {
      asked.push(id);
      return policies.get(id);
    };
    const identities = agentIdentitiesOf(JSON.stringify({ agentIdentities: ['agent-a', 'agent-b', 'agent-c'] }));
    expect(await agentPolicyOf(identities, policyOf)).toEqual({ enabled: false });
    expect(asked).toEqual(['agent-a', 'agent-b']);
    expect(await agentPolicyOf(agentIdentitiesOf('not json'), policyOf)).toBeUndefined();
  });

  test('reads the agent identity from room metadata and ignores non-JSON metadata', () => {
    expect([...agentIdentitiesOf(roomMeta)]).toEqual(['agent-7']);
    expect(agentIdentitiesOf('not json').size).toBe(0);
    expect(roomRecordingOptions('plain text')).toBeUndefined();
  });

  test('invalid recording options in metadata are RECORDING_OPTIONS_INVALID', () => {
    expect(() => participantRecordingOptions(JSON.stringify({ recording: { enabled: 'yes' } }))).toThrowError(
      expect.objectContaining({ code: 'RECORDING_OPTIONS_INVALID' }),
    );
  });
});
