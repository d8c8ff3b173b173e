/**
 * LiveKit Track Egress load: each VU is one room at a time, its caller and agent tracks each on their own
 * egress WebSocket (k6/websockets, both open at once), 48 kHz pcm_s16le in real time, URLs signed with the
 * gateway's master key as the code starting the Track Egress would sign them.
 *
 *   k6 run -e GATEWAY_URL=http://127.0.0.1:8080 -e EGRESS_MASTER_KEY=<MASTER_KEY, base64> \
 *     -e ROOMS=20 -e DURATION=5m -e CALL_SECONDS=30 [-e API_KEY=<key of LIVEKIT_ORG>] load/k6/livekit-egress.ts
 *
 * Rooms are synthetic (name k6-…, SID RM_… in the URL, so the gateway does not look them up in LiveKit).
 * With API_KEY each room's recording is looked up once its sockets closed (after the gateway's
 * LIVEKIT_EGRESS_RECONNECT_GRACE_SECONDS) and must be finished with the room's duration.
 */
import { check } from 'k6';
import crypto from 'k6/crypto';
import { Counter, Rate } from 'k6/metrics';
import type { Options } from 'k6/options';
import { waitForFinishedRecording } from './lib/api.ts';
import { egressUrlKey, EGRESS_FRAME_MS, pcmToneFrame, signEgressUrl, streamTrack } from './lib/egress.ts';
import { callMs, env, hex, httpBase, numberEnv, optionalEnv, wsBase } from './lib/env.ts';

const GATEWAY_URL = httpBase(env('GATEWAY_URL', 'http://127.0.0.1:8080'));
const KEY = egressUrlKey(env('EGRESS_MASTER_KEY'));
const API_KEY = optionalEnv('API_KEY');
const ROOMS = numberEnv('ROOMS', 10, { min: 1, integer: true });
const DURATION = env('DURATION', '1m');
const CALL_MS = callMs(numberEnv('CALL_SECONDS', 30, { min: 0.02 }));
const RATE = numberEnv('EGRESS_RATE', 48_000, { min: 8000, integer: true });
/** How long to wait for the recording once the sockets closed: the gateway's reconnect grace plus finalisation. */
const VERIFY_TIMEOUT_S = numberEnv('VERIFY_TIMEOUT_SECONDS', 30, { min: 1 });
/** Accepted difference between the recording's duration and the audio sent: the two sockets open a few ms apart. */
const DURATION_TOLERANCE_MS = 250;

const CALLER_HZ = 400;
const AGENT_HZ = 1000;
const AMPLITUDE = 8000;
const FRAMES = { caller: pcmToneFrame(CALLER_HZ, AMPLITUDE, RATE), agent: pcmToneFrame(AGENT_HZ, AMPLITUDE, RATE) };

const handshakeOk = new Rate('egress_handshake_ok');
const keptOpen = new Rate('egress_closed_by_client');
const framesSent = new Counter('egress_frames');
const recordingComplete = new Rate('egress_recording_complete');

export const options: Options = {
  scenarios: {
    egress_rooms: {
      executor: 'constant-vus',
      vus: ROOMS,
      duration: DURATION,
      gracefulStop: `${Math.ceil(CALL_MS / 1000 + VERIFY_TIMEOUT_S) + 30}s`,
    },
  },
  thresholds: {
    // Every egress socket is admitted: the URL's signature is right.
    egress_handshake_ok: ['rate>0.99'],
    // No socket was cut by the gateway before the track ended.
    egress_closed_by_client: ['rate>0.99'],
    ws_connecting: ['p(95)<1000'],
    checks: ['rate>0.99'],
    ...(API_KEY ? { egress_recording_complete: ['rate>0.99'], http_req_failed: ['rate<0.01'] } : {}),
  },
};

export default async function egressRoom(): Promise<void> {
  const room = `k6-${hex(crypto.randomBytes(6))}`;
  const roomSid = `RM_${hex(crypto.randomBytes(6))}`;
  const exp = Math.floor(Date.now() / 1000) + Math.ceil(CALL_MS / 1000) + 3600;
  const frames = CALL_MS / EGRESS_FRAME_MS;
  const base = wsBase(GATEWAY_URL);
  const roles = ['caller', 'agent'] as const;
  const outcomes = await Promise.all(
    roles.map((role) =>
      streamTrack(
        signEgressUrl(base, KEY, { room, roomSid, participant: `${role}-1`, track: `TR_${role}`, role, rate: RATE, exp }),
        FRAMES[role],
        frames,
        { name: 'livekit-egress', role },
      ),
    ),
  );
  outcomes.forEach((outcome, i) => {
    const role = roles[i] ?? 'caller';
    handshakeOk.add(outcome.opened, { role });
    keptOpen.add(outcome.closedByClient, { role });
    framesSent.add(outcome.framesSent, { role });
    check(outcome, {
      'egress socket opened': (o) => o.opened,
      'every frame sent before closing': (o) => o.framesSent === frames && o.closedByClient,
    });
    if (!outcome.closedByClient) console.warn(`room ${room} ${role}: ${outcome.error ?? 'closed by the gateway'}`);
  });

  if (API_KEY && outcomes.some((o) => o.opened)) {
    const recording = waitForFinishedRecording(GATEWAY_URL, API_KEY, roomSid, VERIFY_TIMEOUT_S);
    const done = recording !== null && (recording.status === 'completed' || recording.status === 'uploading');
    recordingComplete.add(done);
    check(recording, {
      'room recording finished': () => done,
      'room recording lasts the room': (r) => r?.durationMs !== null && r?.durationMs !== undefined && Math.abs(r.durationMs - CALL_MS) <= DURATION_TOLERANCE_MS,
    });
  }
}
