/** A real gateway (PostgreSQL, MinIO, worker threads) wired to the test LiveKit server, and recording readers. */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import type { Gateway } from '../../dist/gateway/gateway.js';
import { decryptStream, unwrapDataKey } from '../../dist/crypto/index.js';
import { s3Client } from '../support/peers.js';
import { startTestGateway as startSharedTestGateway, type LogCapture } from '../support/gateway.js';
import { AudioFrame, AudioSource, LocalAudioTrack, Room, TrackPublishOptions, TrackSource } from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';
import { generateTone, splitChannels, toneAmplitude, rms } from '../support/audio.js';

export const OUTPUT_RATE = 16_000;

export interface LivekitPeerEnv {
  url: string;
  apiKey: string;
  apiSecret: string;
  webhookRelayUrl: string;
}

export function livekitPeer(): LivekitPeerEnv {
  const get = (name: string): string => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set: test/peers/global-setup.ts starts LiveKit`);
    return value;
  };
  return {
    url: get('CALLVAULT_TEST_LIVEKIT_URL'),
    apiKey: get('CALLVAULT_TEST_LIVEKIT_API_KEY'),
    apiSecret: get('CALLVAULT_TEST_LIVEKIT_API_SECRET'),
    webhookRelayUrl: get('CALLVAULT_TEST_LIVEKIT_WEBHOOK_RELAY'),
  };
}

export interface TestGateway {
  gateway: Gateway;
  baseUrl: string;
  org: string;
  apiKey: string;
  otherOrgApiKey: string;
  masterKey: Uint8Array;
  databaseUrl: string;
  /** The gateway's log lines, parsed. */
  logs: LogCapture;
  stop(): Promise<void>;
}

export async function startTestGateway(
  options: {
    now?: () => number;
    livekit?: LivekitPeerEnv | null;
    batcherLimits?: { maxPendingMediaMs: number; maxJournalBacklogBytes: number };
    /** How far egress audio may run ahead of the gateway's clock (MAX_AHEAD_OF_CLOCK_SECONDS; 10 s by default). */
    maxAheadOfClockMs?: number;
  } = {},
): Promise<TestGateway> {
  const org = 'lk-org';
  const apiKey = `cvtest_${randomBytes(16).toString('hex')}`;
  const otherOrgApiKey = `cvtest_${randomBytes(16).toString('hex')}`;
  const livekit = options.livekit === undefined ? livekitPeer() : options.livekit;
  const t = await startSharedTestGateway({
    accounts: [],
    apiKeys: [
      { org, key: apiKey },
      { org: 'other-org', key: otherOrgApiKey },
    ],
    publicUrl: 'http://127.0.0.1',
    // A short reconnect grace keeps egress tests quick; long enough for a test's immediate reconnect.
    ...(livekit
      ? {
          livekit: {
            url: livekit.url,
            apiKey: livekit.apiKey,
            apiSecret: livekit.apiSecret,
            org,
            egressReconnectGraceMs: 1500,
            ...(options.maxAheadOfClockMs === undefined ? {} : { maxAheadOfClockMs: options.maxAheadOfClockMs }),
          },
        }
      : {}),
    recording: { sampleRate: OUTPUT_RATE, defaults: { enabled: true, stereo: true } },
    workerThreads: 1,
    presignedUrlTtlSeconds: 60,
    ...(options.now ? { now: options.now } : {}),
    ...(options.batcherLimits ? { batcherLimits: options.batcherLimits } : {}),
  });
  return {
    gateway: t.gateway,
    baseUrl: t.httpUrl,
    org,
    apiKey,
    otherOrgApiKey,
    masterKey: t.gateway.options.keyring.current,
    databaseUrl: t.databaseUrl,
    logs: t.logs,
    stop: () => t.dispose(),
  };
}

export interface RecordingRow {
  id: string;
  recording_sid: string;
  status: string;
  channels: number;
  sample_rate: number;
  duration_ms: string | null;
  bucket: string;
  object_key: string;
  key_id: string;
  wrapped_key: Buffer;
  metadata: Record<string, unknown>;
  started_at: Date;
  call_external_id: string;
}

export async function recordingRows(databaseUrl: string): Promise<RecordingRow[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<RecordingRow>(
      `SELECT r.*, c.external_id AS call_external_id FROM recordings r JOIN calls c ON c.id = r.call_id ORDER BY r.started_at`,
    );
    return rows;
  } finally {
    await client.end();
  }
}

/** Fetches the object from MinIO and decrypts it with the data key unwrapped from the row. */
export async function decryptRecording(row: RecordingRow, masterKey: Uint8Array): Promise<{ channels: Int16Array[]; sampleRate: number }> {
  const s3 = s3Client();
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: row.bucket, Key: row.object_key }));
    const body = object.Body as AsyncIterable<Uint8Array>;
    const parts: Uint8Array[] = [];
    const keyring = new Map([[row.key_id, masterKey]]);
    for await (const chunk of decryptStream(body, (header) => unwrapDataKey(keyring, header.keyId, new Uint8Array(row.wrapped_key)))) {
      parts.push(chunk);
    }
    return { channels: splitChannels(Buffer.concat(parts), row.channels), sampleRate: row.sample_rate };
  } finally {
    s3.destroy();
  }
}

/** Amplitude of a tone within [fromS, toS) of a channel. */
export function toneIn(channel: Int16Array, sampleRate: number, frequency: number, fromS: number, toS: number): number {
  return toneAmplitude(channel.subarray(Math.round(fromS * sampleRate), Math.round(toS * sampleRate)), sampleRate, frequency);
}

export function rmsIn(channel: Int16Array, sampleRate: number, fromS: number, toS: number): number {
  return rms(channel.subarray(Math.round(fromS * sampleRate), Math.round(toS * sampleRate)));
}

/** Waits for a condition the code under test will make true; fails with `what` when it never does. */
export async function until<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const RATE = 48_000;
const FRAME = 480;
/** The amplitude publishers send their tone at. */
export const PUBLISHED_AMPLITUDE = 8_000;
const AMPLITUDE = PUBLISHED_AMPLITUDE;

export interface Publisher {
  identity: string;
  trackSid: string;
  /** Its rtc-node room, for what a test sends besides audio (text streams). */
  room: Room;
  /**
   * Captures `seconds` of tone in real time; returns the wall time (ms) the first frame was captured.
   * Each cue runs (not awaited) once capture reaches its offset, so the tone itself never pauses.
   */
  speak(seconds: number, cues?: Array<{ atS: number; run: () => unknown }>): Promise<number>;
  leave(): Promise<void>;
}

/** A participant that joins `room` and publishes a tone in real time with rtc-node. */
export async function publisher(
  room: string,
  identity: string,
  frequency: number,
  extra: { kind?: 'agent'; metadata?: string; attributes?: Record<string, string> } = {},
): Promise<Publisher> {
  const peer = livekitPeer();
  const token = new AccessToken(peer.apiKey, peer.apiSecret, {
    identity,
    ...(extra.metadata ? { metadata: extra.metadata } : {}),
    ...(extra.attributes ? { attributes: extra.attributes } : {}),
  });
  token.addGrant({ room, roomJoin: true, canPublish: true, canSubscribe: false });
  if (extra.kind) token.kind = extra.kind;
  const lkRoom = new Room();
  await lkRoom.connect(peer.url, await token.toJwt(), { autoSubscribe: false, dynacast: false });
  // A short queue keeps capture paced by real time, so capture times are when audio really left.
  const source = new AudioSource(RATE, 1, 50);
  const track = LocalAudioTrack.createAudioTrack('mic', source);
  const options = new TrackPublishOptions();
  options.source = TrackSource.SOURCE_MICROPHONE;
  const publication = await lkRoom.localParticipant!.publishTrack(track, options);
  let sample = 0;
  return {
    identity,
    trackSid: publication.sid!,
    room: lkRoom,
    async speak(seconds, cues = []) {
      const startedAt = Date.now();
      const frames = Math.round((seconds * RATE) / FRAME);
      const pending = [...cues].sort((a, b) => a.atS - b.atS);
      for (let i = 0; i < frames; i++) {
        while (pending.length > 0 && pending[0]!.atS * RATE <= i * FRAME) pending.shift()!.run();
        const tone = generateTone({ frequency, sampleRate: RATE, samples: FRAME, amplitude: AMPLITUDE, startSample: sample });
        sample += FRAME;
        await source.captureFrame(new AudioFrame(tone, RATE, 1, FRAME));
      }
      await source.waitForPlayout();
      return startedAt;
    },
    async leave() {
      await lkRoom.disconnect();
      await source.close();
    },
  };
}

