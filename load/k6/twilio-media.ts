/**
 * Twilio Media Streams load: each VU is one caller placing two-track calls back to back, in real time
 * (a 20 ms µ-law frame per track every 20 ms), with the signed upgrade Twilio sends.
 *
 *   k6 run -e GATEWAY_URL=http://127.0.0.1:8080 -e ACCOUNT_SID=AC… -e AUTH_TOKEN=… \
 *     -e CALLS=50 -e DURATION=5m -e CALL_SECONDS=30 [-e PUBLIC_URL=https://rec.example.com] [-e API_KEY=…] \
 *     load/k6/twilio-media.ts
 *
 * With API_KEY (a key of the account's organisation) each call's recording is looked up afterwards and
 * must be finished with the call's exact duration.
 */
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { waitForFinishedRecording } from './lib/api.ts';
import { callMs, env, httpBase, numberEnv, optionalEnv, wsBase } from './lib/env.ts';
import { FRAME_MS, placeCall, randomSid, toneFramePayload, TRACKS } from './lib/twilio.ts';

const GATEWAY_URL = httpBase(env('GATEWAY_URL', 'http://127.0.0.1:8080'));
/** The gateway's PUBLIC_URL: Twilio signs the URL it connected to, which is the public one. */
const PUBLIC_URL = httpBase(env('PUBLIC_URL', GATEWAY_URL));
const ACCOUNT_SID = env('ACCOUNT_SID');
const AUTH_TOKEN = env('AUTH_TOKEN');
const API_KEY = optionalEnv('API_KEY');
const CALLS = numberEnv('CALLS', 10, { min: 1, integer: true });
const DURATION = env('DURATION', '1m');
const CALL_MS = callMs(numberEnv('CALL_SECONDS', 30, { min: 0.02 }));
const CLOSE_TIMEOUT_MS = numberEnv('CLOSE_TIMEOUT_SECONDS', 30, { min: 1 }) * 1000;
/** Sent as the `recording` custom parameter when set (JSON, e.g. {"enabled":true,"stereo":true}). */
const RECORDING = optionalEnv('RECORDING');

const CALLER_HZ = 400;
const AGENT_HZ = 1000;
const PAYLOADS = { inbound: toneFramePayload(CALLER_HZ, 0.4), outbound: toneFramePayload(AGENT_HZ, 0.4) };
const PATH = '/twilio/media';

const handshakeOk = new Rate('twilio_handshake_ok');
const closedNormally = new Rate('twilio_close_1000');
const stopToClose = new Trend('twilio_stop_to_close', true);
const mediaFrames = new Counter('twilio_media_frames');
const recordingComplete = new Rate('twilio_recording_complete');

export const options: Options = {
  scenarios: {
    twilio_calls: {
      executor: 'constant-vus',
      vus: CALLS,
      duration: DURATION,
      // A call under way when the duration ends is let finish, recording included.
      gracefulStop: `${Math.ceil((CALL_MS + CLOSE_TIMEOUT_MS) / 1000) + 30}s`,
    },
  },
  thresholds: {
    // Every upgrade is accepted (101): the signature is right and the gateway admits the stream.
    twilio_handshake_ok: ['rate>0.99'],
    // Every call ends with the gateway's 1000 after stop, i.e. its recording was finalised.
    twilio_close_1000: ['rate>0.99'],
    twilio_stop_to_close: ['p(95)<5000'],
    ws_connecting: ['p(95)<1000'],
    checks: ['rate>0.99'],
    ...(API_KEY ? { twilio_recording_complete: ['rate>0.99'], http_req_failed: ['rate<0.01'] } : {}),
  },
};

export default function twilioCall(): void {
  const callSid = randomSid('CA');
  const outcome = placeCall({
    url: `${wsBase(GATEWAY_URL)}${PATH}`,
    signedUrl: `${wsBase(PUBLIC_URL)}${PATH}`,
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    callSid,
    streamSid: randomSid('MZ'),
    durationMs: CALL_MS,
    leadMs: 0,
    closeTimeoutMs: CLOSE_TIMEOUT_MS,
    payloads: PAYLOADS,
    customParameters: RECORDING ? { recording: RECORDING } : {},
    tags: { name: 'twilio-media' },
  });
  const normal = outcome.stopSent && outcome.closedBy === 'gateway' && outcome.closeCode === 1000;
  handshakeOk.add(outcome.status === 101 && outcome.opened);
  closedNormally.add(normal);
  mediaFrames.add(outcome.mediaFrames);
  if (outcome.stopToCloseMs !== null) stopToClose.add(outcome.stopToCloseMs);
  check(outcome, {
    'upgrade answered 101': (o) => o.status === 101,
    'every media frame sent': (o) => o.mediaFrames === (CALL_MS / FRAME_MS) * TRACKS.length,
    'closed by the gateway with 1000 after stop': () => normal,
  });
  if (!normal) console.warn(`call ${callSid}: status ${outcome.status}, close ${outcome.closeCode} by ${outcome.closedBy}, ${outcome.error ?? ''}`);

  if (API_KEY && outcome.opened) {
    const recording = waitForFinishedRecording(GATEWAY_URL, API_KEY, callSid, 30);
    const done = recording !== null && (recording.status === 'completed' || recording.status === 'uploading');
    recordingComplete.add(done);
    check(recording, {
      'recording finished': () => done,
      'recording lasts the call': (r) => r?.durationMs === CALL_MS,
    });
  }
}
