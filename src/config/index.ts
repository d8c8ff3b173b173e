import { hostname } from 'node:os';
import { z } from 'zod';
import { CallvaultError, ErrorCode } from '../errors/index.js';

/** Recording options a stream, room or agent may carry. The same shape everywhere. */
export const RecordingOptionsSchema = z
  .object({
    enabled: z.boolean(),
    key: z.string().min(1).optional(),
    stereo: z.boolean().optional(),
    /** LiveKit: the identity of the participant who is the agent (right channel in stereo). Ignored by Twilio streams. */
    agentIdentity: z.string().min(1).max(256).optional(),
  })
  .strict();
export type RecordingOptions = z.infer<typeof RecordingOptionsSchema>;

/** User ids as agent platforms hand them out (API key binding, the stream's `userId` tag): opaque, short, printable. */
export const USER_ID = /^[A-Za-z0-9._:@|-]{1,200}$/;

const boolFromEnv = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const commaList = <T extends z.ZodType<unknown, string>>(item: T) =>
  z
    .string()
    .transform((s) => s.split(',').map((p) => p.trim()).filter((p) => p.length > 0))
    .pipe(z.array(item));

const orgId = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'organisation ids are lowercase letters, digits, _ and -');

const twilioAccount = z
  .string()
  .transform((s) => s.split(':'))
  .pipe(z.tuple([orgId, z.string().regex(/^AC[0-9a-fA-F]{32}$/, 'expected an AC… account SID'), z.string().min(1)]))
  .transform(([org, accountSid, authToken]) => ({ org, accountSid, authToken }));

/** A canonical UUID: SignalWire's project ids and call, stream and recording SIDs. */
export const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * A SignalWire Space URL: `example.signalwire.com` or `https://example.signalwire.com`, reduced to its origin.
 * http is accepted for a local proxy or test peer; a path, query or credentials are refused.
 */
const spaceUrl = z
  .string()
  .transform((s, ctx) => {
    let url: URL;
    try {
      url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `https://${s}`);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'expected a Space URL such as example.signalwire.com' });
      return z.NEVER;
    }
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search || url.hash || url.pathname !== '/') {
      ctx.addIssue({ code: 'custom', message: 'expected a Space URL such as https://example.signalwire.com (no path, query or credentials)' });
      return z.NEVER;
    }
    return url.origin;
  });

/** `org:projectId:token:spaceUrl`; the Space URL may itself hold a colon (`https://…`), so it is everything after the third. */
const signalWireProject = z
  .string()
  .transform((s) => {
    const parts = s.split(':');
    return [parts[0] ?? '', parts[1] ?? '', parts[2] ?? '', parts.slice(3).join(':')];
  })
  .pipe(
    z.tuple([
      orgId,
      z.string().regex(UUID_PATTERN, 'expected a SignalWire project id (a UUID)'),
      z.string().min(1, 'expected org:projectId:token:spaceUrl'),
      spaceUrl,
    ]),
  )
  .transform(([org, projectId, token, url]) => ({ org, projectId, token, spaceUrl: url }));

const apiKey = z
  .string()
  .transform((s) => {
    const i = s.indexOf(':');
    return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
  })
  .pipe(z.tuple([orgId, z.string().min(16, 'API keys are at least 16 characters')]))
  .transform(([org, key]) => ({ org, key }));

/** `org:secret`; the secret is everything after the first colon (ElevenLabs secrets are opaque text). */
const elevenlabsWebhookSecret = z
  .string()
  .transform((s) => {
    const i = s.indexOf(':');
    return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
  })
  .pipe(z.tuple([orgId, z.string().min(1, 'expected org:secret')]))
  .transform(([org, secret]) => ({ org, secret }));

const base64Key32 = z
  .string()
  .transform((s) => Buffer.from(s, 'base64'))
  .refine((b) => b.length === 32, 'expected base64 of exactly 32 bytes');

const masterKeyId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'key ids are 1-64 letters, digits, ".", "_" and "-"');

/** `id:base64` (or a bare base64 key, named by its digest): an earlier master key, still able to unwrap. */
const previousMasterKey = z
  .string()
  .transform((s) => {
    const i = s.indexOf(':');
    return i < 0 ? [undefined, s] : [s.slice(0, i), s.slice(i + 1)];
  })
  .pipe(
    z.tuple([
      masterKeyId.optional(),
      z
        .string()
        .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected id:base64 of 32 bytes')
        .transform((b) => Buffer.from(b, 'base64'))
        .refine((b) => b.length === 32, 'expected id:base64 of 32 bytes'),
    ]),
  )
  .transform(([id, key]) => ({ id, key }));

/** `*` (every organisation) or a list of organisations. */
const orgSelection = z
  .string()
  .transform((s) => s.split(',').map((p) => p.trim()).filter((p) => p.length > 0))
  .pipe(z.union([z.tuple([z.literal('*')]).transform(() => '*' as const), z.array(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'expected * or organisation ids'))]));

/** A gateway id: what GATEWAY_ID accepts and what the default derives from the host name. */
export const GATEWAY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * The host name reduced to a valid gateway id: in a Kubernetes StatefulSet the pod name (`callvault-0`), stable
 * across restarts and handed to the replacement that gets the same volume.
 */
export function defaultGatewayId(host: string = hostname()): string {
  const cleaned = host
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63);
  return cleaned.length > 0 ? cleaned : 'callvault';
}

const jsonOf = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);

export const EnvFields = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  PUBLIC_URL: z
    .url()
    .refine((u) => /^(https?|wss?):$/.test(new URL(u).protocol), 'expected an http(s) or ws(s) URL')
    .optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z.string().url().optional(),
  S3_ENDPOINT: z.string().url().optional(),
  S3_BUCKET: z.string().min(3).default('callvault-recordings'),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_FORCE_PATH_STYLE: boolFromEnv.optional(),
  S3_PART_SIZE_MIB: z.coerce.number().int().min(5).max(512).default(5),
  S3_MAX_INFLIGHT_PARTS: z.coerce.number().int().min(1).max(1024).default(16),
  /** A connection to S3 not established within this long fails the request; the upload is retried. */
  S3_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  /** A request to S3 whose connection sends and receives nothing this long fails (a hanging S3); retried. */
  S3_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  MASTER_KEY: base64Key32.optional(),
  MASTER_KEY_ID: masterKeyId.optional(),
  /** Earlier master keys, `id:base64,...`, kept so recordings wrapped before a rotation stay readable. */
  PREVIOUS_MASTER_KEYS: commaList(previousMasterKey).optional(),
  /** Longest lifetime a gateway-signed URL may have (LiveKit egress URLs, Twilio stream tokens): a later `exp` is refused. */
  SIGNED_URL_MAX_LIFETIME_SECONDS: z.coerce.number().int().min(60).max(31 * 24 * 3600).default(24 * 3600),
  /** How long a signed playback URL (`POST /calls/{callId}/playback-url`) stays valid; bounded to minutes. */
  PLAYBACK_URL_TTL_SECONDS: z.coerce.number().int().min(30).max(3600).default(600),
  TWILIO_ACCOUNTS: commaList(twilioAccount).optional(),
  TWILIO_SIGNATURE_VALIDATION: boolFromEnv.default(true),
  /** SignalWire projects, `org:projectId:token:spaceUrl,...`: streams at /signalwire/media and SignalWire-side recordings. */
  SIGNALWIRE_PROJECTS: commaList(signalWireProject).optional(),
  /** Organisations (or `*`) whose streams must carry a gateway-signed stream token bound to the CallSid. */
  TWILIO_STREAM_TOKEN_REQUIRED: orgSelection.optional(),
  API_KEYS: commaList(apiKey).optional(),
  RECORDING_SAMPLE_RATE: z.coerce
    .number()
    .pipe(z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]))
    .default(16000),
  RECORDING_DEFAULT: jsonOf(RecordingOptionsSchema).default({ enabled: true, stereo: false }),
  MAX_AHEAD_OF_CLOCK_SECONDS: z.coerce.number().positive().max(3600).default(10),
  WORKER_THREADS: z.coerce.number().int().min(1).max(64).optional(),
  SHUTDOWN_DEADLINE_SECONDS: z.coerce.number().positive().default(30),
  PRESIGNED_URL_TTL_SECONDS: z.coerce.number().int().min(1).max(300).default(300),
  /** Where the Twilio REST API is reached (a proxy, a regional endpoint); Twilio's own when unset. */
  TWILIO_API_BASE_URL: z.url().optional(),
  /** Twilio-side recordings are deleted from Twilio once they are stored here. */
  TWILIO_DELETE_AFTER_IMPORT: boolFromEnv.default(false),
  SPOOL_CLIENT_KEYS: boolFromEnv.default(true),
  /** Periodically fetch completed Twilio recordings of calls that have none here (when Twilio cannot reach us). */
  TWILIO_RECORDING_POLLING: boolFromEnv.default(false),
  TWILIO_RECORDING_POLL_INTERVAL_MINUTES: z.coerce.number().positive().max(1440).default(5),
  /** How often the retention sweeper deletes recordings older than their organisation's retention period. */
  RETENTION_SWEEP_INTERVAL_MINUTES: z.coerce.number().positive().max(10080).default(60),
  /** Per organisation, `org:secret,...`: the HMAC secrets of ElevenLabs post-call webhooks; the matching one picks the org. */
  ELEVENLABS_WEBHOOK_SECRETS: commaList(elevenlabsWebhookSecret).optional(),
  LIVEKIT_URL: z.string().url().optional(),
  LIVEKIT_API_KEY: z.string().min(1).optional(),
  LIVEKIT_API_SECRET: z.string().min(1).optional(),
  /** The organisation that owns the LiveKit project (its rooms' recordings belong to it). */
  LIVEKIT_ORG: orgId.optional(),
  /** How long an egress-started room recording waits for a dropped egress socket to reconnect. */
  LIVEKIT_EGRESS_RECONNECT_GRACE_SECONDS: z.coerce.number().min(0).max(300).default(5),
  /** A signed Twilio stream that sends no `start` within this long is closed (4407). */
  STREAM_START_TIMEOUT_SECONDS: z.coerce.number().positive().max(3600).default(10),
  /** Concurrent streams per Twilio account (and per LiveKit project); the excess is refused (HTTP 429). */
  MAX_STREAMS_PER_ACCOUNT: z.coerce.number().int().min(1).default(1000),
  /** Below this much free space under DATA_DIR no new stream is admitted (HTTP 507) and /readyz is unready. */
  SPOOL_MIN_FREE_MIB: z.coerce.number().min(0).default(512),
  /** Control requests (start, stop, pause, resume) per call per organisation per minute; more answer 429 with Retry-After. */
  /** Transcription jobs this instance runs at once; 0 runs none here (another instance does). */
  TRANSCRIPTION_CONCURRENCY: z.coerce.number().int().min(0).max(16).default(1),
  /** Recordings longer than this fail their transcription with TRANSCRIPTION_TOO_LONG (a job holds its audio in memory). */
  TRANSCRIPTION_MAX_SECONDS: z.coerce.number().int().min(1).max(86_400).default(7_200),
  CONTROL_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).max(100_000).default(10),
  /** This gateway's stable id in a fleet: recordings name it as their owner; peers forward control requests to it. */
  GATEWAY_ID: z.string().regex(GATEWAY_ID_PATTERN, 'gateway ids are 1-63 letters, digits, ".", "_" and "-", starting with a letter or digit').default(() => defaultGatewayId()),
  /** How often the gateway writes its heartbeat into PostgreSQL and renews its fleet-job leases. */
  HEARTBEAT_INTERVAL_SECONDS: z.coerce.number().min(0.1).max(300).default(5),
  /** A gateway whose heartbeat is older than this is dead: its live recordings become interrupted, its leases move. */
  GATEWAY_DEAD_AFTER_SECONDS: z.coerce.number().min(0.5).max(3600).default(30),
  /** Every this many seconds each live recording uploads its sealed journal records since the last checkpoint to S3 (0: off). */
  SPOOL_CHECKPOINT_SECONDS: z.coerce.number().min(0).max(3600).refine((v) => v === 0 || v >= 1, 'is 0 (off) or at least 1').default(0),
  /** A dead gateway's interrupted recording with checkpoints is finished by a peer once its owner's heartbeat is this old. */
  SPOOL_CHECKPOINT_TAKEOVER_SECONDS: z.coerce.number().min(0).max(86_400).default(300),
  /** Where peers reach this gateway's HTTP port to forward control requests; default http://<HOST or host name>:<port>. */
  INTERNAL_URL: z.url({ protocol: /^https?$/ }).optional(),
  /** A control request handed to the gateway holding the call that is not answered within this long fails with 503 OWNER_UNAVAILABLE. */
  CONTROL_FORWARD_TIMEOUT_SECONDS: z.coerce.number().min(0.1).max(300).default(10),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** The variables, then the rules that tie several of them together: all checked before anything starts. */
export const EnvSchema = EnvFields.superRefine((env, ctx) => {
  const livekit = { LIVEKIT_URL: env.LIVEKIT_URL, LIVEKIT_API_KEY: env.LIVEKIT_API_KEY, LIVEKIT_API_SECRET: env.LIVEKIT_API_SECRET };
  const set = Object.entries(livekit).filter(([, v]) => v !== undefined);
  if (set.length > 0 && set.length < 3) {
    for (const [name, value] of Object.entries(livekit)) {
      if (value === undefined) ctx.addIssue({ code: 'custom', path: [name], message: 'LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET go together' });
    }
  }
  // Without TWILIO_ACCOUNTS and API_KEYS the development organisation owns the LiveKit project.
  const devSetup = env.TWILIO_ACCOUNTS === undefined && env.API_KEYS === undefined;
  if (set.length === 3 && env.LIVEKIT_ORG === undefined && !devSetup) {
    ctx.addIssue({ code: 'custom', path: ['LIVEKIT_ORG'], message: 'required when LIVEKIT_URL is set' });
  }
  if (env.GATEWAY_DEAD_AFTER_SECONDS < 2 * env.HEARTBEAT_INTERVAL_SECONDS) {
    ctx.addIssue({ code: 'custom', path: ['GATEWAY_DEAD_AFTER_SECONDS'], message: 'must be at least twice HEARTBEAT_INTERVAL_SECONDS' });
  }
});

export type Env = z.infer<typeof EnvSchema>;

/**
 * Parses the environment. A bad value stops start-up with an error naming the variable;
 * the value itself is never echoed, since several variables carry secrets.
 */
export function loadEnv(env: NodeJS.ProcessEnv = process.env): Env {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(EnvFields.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const result = EnvSchema.safeParse(picked);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new CallvaultError(ErrorCode.ConfigInvalid, `invalid configuration: ${problems.join('; ')}`, {
      details: { variables: result.error.issues.map((i) => i.path.join('.')) },
    });
  }
  return result.data;
}
