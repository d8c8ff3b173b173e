/**
 * The OpenAPI 3.1 description of every HTTP route, served at /openapi.json. One document per process:
 * a module that registers routes adds its paths here with `addPaths()`, and test/api/openapi.test.ts checks
 * that the routes the gateway registered and the document describe the same operations and status codes.
 */

export type OpenApiObject = Record<string, unknown>;

/** One operation; `responses` is keyed by status code ('200', '404', ...). */
export interface OperationObject extends OpenApiObject {
  operationId: string;
  summary: string;
  responses: Record<string, OpenApiObject>;
}

export type HttpVerb = 'get' | 'head' | 'post' | 'put' | 'delete' | 'patch';
export type PathItem = Partial<Record<HttpVerb, OperationObject>> & OpenApiObject;

/** Marks an operation served as a WebSocket upgrade (not a router route): 101 when accepted. */
export const WEBSOCKET_EXTENSION = 'x-callvault-websocket';

const errorSchemaRef = { $ref: '#/components/schemas/Error' };

/** A JSON error response: `{ error: { code, message, details? } }`. */
export function errorResponse(description: string, codes: string[]): OpenApiObject {
  return {
    description: `${description} Error codes: ${codes.join(', ')}.`,
    content: { 'application/json': { schema: errorSchemaRef } },
  };
}

export const unauthorized = errorResponse('Missing, malformed, unknown or revoked API key.', ['UNAUTHORIZED']);
export const unavailable = errorResponse(
  'PostgreSQL or object storage is unreachable, the gateway is shutting down, or (`?live=1`, deleting a live recording) the gateway holding the call is dead or did not answer in time (`OWNER_UNAVAILABLE`); retry.',
  ['DATABASE_UNAVAILABLE', 'STORAGE_UNAVAILABLE', 'SHUTTING_DOWN', 'OWNER_UNAVAILABLE'],
);
export const internal = errorResponse('Unexpected failure (logged with details on the server).', ['INTERNAL']);

const callIdParameter = {
  name: 'callId',
  in: 'path',
  required: true,
  description: 'The Twilio CallSid (or LiveKit room SID) of the call.',
  schema: { type: 'string' },
};

const wavHeaders = {
  'Accept-Ranges': { schema: { type: 'string', const: 'bytes' } },
  'Content-Length': { schema: { type: 'integer' } },
  'X-Recording-Sid': { schema: { type: 'string', pattern: '^CR[0-9a-f]{32}$' } },
  'X-Recording-Status': { schema: { type: 'string', enum: ['completed', 'uploading', 'in-progress'] } },
};

function recordingRetrieval(verb: 'get' | 'head'): OperationObject {
  const body = verb === 'get';
  const wav = (description: string, extraHeaders: OpenApiObject = {}) => ({
    description,
    headers: { ...wavHeaders, ...extraHeaders },
    // MP3 recordings (ElevenLabs) are served as the MP3 they arrived as.
    ...(body ? { content: { 'audio/wav': { schema: { type: 'string', format: 'binary' } }, 'audio/mpeg': { schema: { type: 'string', format: 'binary' } } } } : {}),
  });
  return {
    operationId: verb === 'get' ? 'getCallRecording' : 'headCallRecording',
    summary: verb === 'get' ? "Download the call's most recent completed recording" : 'Recording headers without the body',
    description:
      'Server key mode: the recording as a PCM16 WAV (an MP3 recording, e.g. from ElevenLabs: `audio/mpeg`, its bytes as received), ' +
      'decrypted and verified segment by segment while it streams; ' +
      'Range requests (one range) seek by decrypting only the segments needed. Client key mode: a redirect to a ' +
      'short-lived presigned URL of the encrypted object (decrypt it with `callvault decrypt`). A call whose only ' +
      'recording is still in progress answers 409 unless `live=1`, which serves the audio stored so far ' +
      '(server key mode, from the gateway that is recording it). ' +
      '`track=caller` or `track=bot`: one track of a stereo recording (caller left, bot right) as a mono PCM16 WAV at ' +
      "the recording's rate, sample-aligned with the stereo file, deinterleaved while it streams (Range and HEAD as above); " +
      'a mono (mixed) or MP3 recording answers 409 TRACKS_NOT_SEPARATE. In client key mode `track` redirects to the ' +
      'encrypted stereo object like the stereo route, with `X-Callvault-Track` and `X-Callvault-Track-Channel` (0 left, 1 right).',
    security: [{ bearerAuth: [] }],
    parameters: [
      callIdParameter,
      {
        name: 'track',
        in: 'query',
        required: false,
        description: 'One track as a mono WAV: `caller` (the left channel) or `bot` (the right channel).',
        schema: { type: 'string', enum: ['caller', 'bot'] },
      },
      {
        name: 'live',
        in: 'query',
        required: false,
        description: 'With `1`, an in-progress recording is served as far as it has been stored.',
        schema: { type: 'string', enum: ['1', 'true'] },
      },
      {
        name: 'Range',
        in: 'header',
        required: false,
        description: 'One byte range over the WAV file, e.g. `bytes=0-1023`, `bytes=44-`, `bytes=-4096`.',
        schema: { type: 'string' },
      },
    ],
    responses: {
      '200': wav('The whole WAV file.'),
      '206': wav('The requested byte range of the WAV file.', {
        'Content-Range': { schema: { type: 'string', example: 'bytes 0-1023/96044' } },
      }),
      '302': {
        description: 'Client key mode: the encrypted object at a presigned URL, valid for PRESIGNED_URL_TTL_SECONDS (at most 300).',
        headers: {
          Location: { schema: { type: 'string', format: 'uri' } },
          'X-Recording-Sid': { schema: { type: 'string' } },
        },
      },
      '401': unauthorized,
      '400': errorResponse('`track` is neither `caller` nor `bot`.', ['BAD_REQUEST']),
      '404': errorResponse("No recording for this call (also when the call is another organisation's).", ['NOT_FOUND']),
      '409': errorResponse(
        "The call's recording is not completed (`details.status`: `in-progress` or `failed`), or live audio was asked of a client-key recording, " +
          'or `track` was asked of a recording whose tracks were mixed into one channel (TRACKS_NOT_SEPARATE, `details.channels`).',
        ['CONFLICT', 'TRACKS_NOT_SEPARATE'],
      ),
      '416': {
        ...errorResponse('The range starts past the end of the WAV file; `Content-Range: bytes */<size>`.', ['RANGE_NOT_SATISFIABLE']),
        headers: { 'Content-Range': { schema: { type: 'string', example: 'bytes */96044' } } },
      },
      '503': unavailable,
      default: internal,
    },
  };
}

const recordingDeletion: OperationObject = {
  operationId: 'deleteCallRecording',
  summary: "Delete every recording of the call: objects, metadata and spool files",
  description:
    'A recording still in progress is stopped first (its multipart upload aborted, its spool removed). Answers 204 ' +
    'once the objects are gone from storage and the metadata is cleared; repeating the request answers 404.',
  security: [{ bearerAuth: [] }],
  parameters: [callIdParameter],
  responses: {
    '204': { description: 'Deleted.' },
    '401': unauthorized,
    '404': errorResponse("No recording for this call (also when the call is another organisation's).", ['NOT_FOUND']),
    '503': unavailable,
    default: internal,
  },
};

const text = (description: string, mediaType = 'text/plain') => ({ description, content: { [mediaType]: { schema: { type: 'string' } } } });

const basePaths: Record<string, PathItem> = {
  '/healthz': {
    get: {
      operationId: 'healthz',
      summary: 'Liveness: the process is up',
      responses: {
        '200': { description: 'Alive.', content: { 'application/json': { schema: { $ref: '#/components/schemas/Health' } } } },
      },
    },
  },
  '/readyz': {
    get: {
      operationId: 'readyz',
      summary: 'Readiness: accepting streams, workers up, PostgreSQL reachable, spool above its free-space reserve; object storage reported',
      description:
        'Goes unready (503) as soon as a shutdown begins, before any stream is refused. Object storage being unreachable answers 200 `degraded`: calls record into the spool and their uploads are retried.',
      responses: {
        '200': { description: 'Ready (or degraded: storage unreachable, uploads waiting).', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
        '503': { description: 'Not ready; `checks` says why.', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
      },
    },
  },
  '/metrics': {
    get: {
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      responses: { '200': text('Prometheus text exposition format.', 'text/plain; version=0.0.4') },
    },
  },
  '/openapi.json': {
    get: {
      operationId: 'openapi',
      summary: 'This document',
      responses: { '200': { description: 'OpenAPI 3.1 document.', content: { 'application/json': { schema: { type: 'object' } } } } },
    },
  },
  '/calls/{callId}/recording': {
    get: recordingRetrieval('get'),
    head: recordingRetrieval('head'),
    delete: recordingDeletion,
  },
  '/twilio/media': {
    get: {
      operationId: 'twilioMediaStream',
      summary: 'Twilio Media Streams WebSocket',
      description:
        'Point `<Stream url="wss://…/twilio/media">` here. The upgrade must carry a valid `X-Twilio-Signature`; the URL may carry a stream token (`?token=`, `callvault stream-url`), which organisations in TWILIO_STREAM_TOKEN_REQUIRED must.',
      [WEBSOCKET_EXTENSION]: true,
      parameters: [
        { name: 'X-Twilio-Signature', in: 'header', required: true, schema: { type: 'string' } },
        { name: 'token', in: 'query', required: false, description: 'Stream token bound to one CallSid and an expiry (docs/ingest.md).', schema: { type: 'string' } },
      ],
      responses: {
        '101': { description: 'Switching protocols: the media stream.' },
        '403': errorResponse('The signature matches no configured Twilio account, or the stream token is missing (where required), invalid or expired.', [
          'SIGNATURE_INVALID',
          'STREAM_TOKEN_INVALID',
        ]),
        '503': errorResponse('The gateway is shutting down.', ['SHUTTING_DOWN']),
      },
    },
  },
  '/signalwire/media': {
    get: {
      operationId: 'signalWireMediaStream',
      summary: 'SignalWire Media Streams WebSocket (Twilio\'s protocol, SignalWire\'s UUID identifiers)',
      description:
        'Point a SignalWire `<Stream url="wss://…/signalwire/media">` here. The upgrade must carry a valid `X-SignalWire-Signature` ' +
        '(HMAC-SHA1 of the URL keyed by the project token; `X-Twilio-Signature` is checked when it is absent).',
      [WEBSOCKET_EXTENSION]: true,
      parameters: [{ name: 'X-SignalWire-Signature', in: 'header', required: true, schema: { type: 'string' } }],
      responses: {
        '101': { description: 'Switching protocols: the media stream.' },
        '403': errorResponse('The signature matches no configured SignalWire project.', ['SIGNATURE_INVALID']),
        '503': errorResponse('The gateway is shutting down.', ['SHUTTING_DOWN']),
      },
    },
  },
};

// The LiveKit ingest registers these routes (src/ingest/livekit/route.ts) when LiveKit is configured.
const livekitRoom = { name: 'room', in: 'path', required: true, description: 'LiveKit room name.', schema: { type: 'string' } };
const livekitPaths: Record<string, PathItem> = {
  '/livekit/rooms/{room}/recording': {
    post: {
      operationId: 'startLivekitRoomRecording',
      summary: 'Start recording a LiveKit room',
      security: [{ bearerAuth: [] }],
      parameters: [livekitRoom],
      requestBody: {
        required: false,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/RecordingOptions' } } },
      },
      responses: {
        '201': {
          description: 'Recording started.',
          content: {
            'application/json': {
              schema: { type: 'object', properties: { callId: { type: 'string' }, recordingSid: { type: 'string' } } },
            },
          },
        },
        '400': errorResponse('Invalid body or recording options.', ['BAD_REQUEST', 'RECORDING_OPTIONS_INVALID', 'CLIENT_KEY_WEAK']),
        '401': unauthorized,
        '404': errorResponse('No such room (or it belongs to another organisation).', ['NOT_FOUND']),
        '409': errorResponse('The room is already recording.', ['CONFLICT']),
        '503': unavailable,
        default: internal,
      },
    },
    delete: {
      operationId: 'stopLivekitRoomRecording',
      summary: "Stop and finalise a LiveKit room's recording",
      security: [{ bearerAuth: [] }],
      parameters: [livekitRoom],
      responses: {
        '200': {
          description: 'Stopped (fields are null when the room was not recording).',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
        '401': unauthorized,
        '404': errorResponse('No such room (or it belongs to another organisation).', ['NOT_FOUND']),
        '503': unavailable,
        default: internal,
      },
    },
  },
  '/livekit/webhook': {
    post: {
      operationId: 'livekitWebhook',
      summary: 'LiveKit webhook receiver (signed with the LiveKit API secret)',
      responses: {
        '200': { description: 'Handled or deliberately ignored.', content: { 'application/json': { schema: { type: 'object' } } } },
        '400': errorResponse('The body is too large or not a webhook event.', ['BAD_REQUEST']),
        '401': errorResponse('The webhook signature is invalid.', ['UNAUTHORIZED']),
        '503': unavailable,
        default: internal,
      },
    },
  },
  '/livekit/egress': {
    get: {
      operationId: 'livekitTrackEgress',
      summary: 'LiveKit Track Egress WebSocket (URL signed by the gateway)',
      [WEBSOCKET_EXTENSION]: true,
      responses: {
        '101': { description: 'Switching protocols: the track audio.' },
        '400': errorResponse('The egress URL is malformed.', ['BAD_REQUEST']),
        '403': errorResponse('The egress URL signature is invalid or expired.', ['SIGNATURE_INVALID']),
        '503': errorResponse('The gateway is shutting down.', ['SHUTTING_DOWN']),
      },
    },
  },
};

const document = {
  openapi: '3.1.0',
  info: {
    title: 'callvault',
    version: '0.1.0',
    description:
      'Self-hosted media gateway recording Twilio Media Streams and LiveKit calls into encrypted objects. ' +
      'Errors are JSON `{ "error": { "code", "message", "details"? } }`; match on `code`. ' +
      "Another organisation's call or recording answers exactly like a missing one (404).",
  },
  components: {
    securitySchemes: {
      bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key of the organisation (`callvault keys create`).' },
    },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string', description: 'Stable error code; see docs/api.md.' },
              message: { type: 'string' },
              details: { type: 'object', additionalProperties: true },
            },
          },
        },
      },
      Health: { type: 'object', properties: { status: { type: 'string', const: 'ok' } } },
      Readiness: {
        type: 'object',
        properties: {
          status: { type: 'string', enum: ['ready', 'degraded', 'unready'] },
          checks: {
            type: 'object',
            properties: {
              accepting: { type: 'boolean' },
              workers: { type: 'boolean' },
              database: { type: 'boolean' },
              storage: { type: 'boolean' },
              spool: { type: 'boolean', description: 'free space under DATA_DIR is at least SPOOL_MIN_FREE_MIB' },
            },
          },
          reasons: {
            type: 'array',
            description: 'Present when unready for a reason with a stable code (e.g. SPOOL_FULL).',
            items: {
              type: 'object',
              properties: { check: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } },
              required: ['check', 'code', 'message'],
            },
          },
          uploadBacklog: {
            type: 'object',
            description: 'Recordings whose upload waits for S3 to be retried, and their spooled bytes.',
            properties: { recordings: { type: 'integer' }, bytes: { type: 'integer' } },
          },
        },
      },
      RecordingOptions: {
        type: 'object',
        additionalProperties: false,
        properties: {
          enabled: { type: 'boolean' },
          key: {
            type: 'string',
            minLength: 8,
            description: 'Client key mode: a passphrase of at least 8 characters (scrypt), or hex/base64 of at least 16 random bytes (HKDF).',
          },
          stereo: { type: 'boolean', default: false, description: 'true: caller left, agent right; false (default): mono, everyone mixed.' },
          agentIdentity: { type: 'string', description: 'LiveKit: the identity of the participant who is the agent (right channel in stereo). Ignored by Twilio streams.' },
        },
      },
    },
  },
  paths: {} as Record<string, PathItem>,
};

const forbidden = errorResponse(
  'The API key lacks the scope this route needs (`details.requiredScope`: read, control, delete or admin), or is bound to a user and the route is organisation-wide.',
  ['FORBIDDEN'],
);
const VERBS: readonly HttpVerb[] = ['get', 'head', 'post', 'put', 'delete', 'patch'];

/** Every route that takes an API key can answer 403 for a key without the scope it needs. */
function withForbidden(item: PathItem): PathItem {
  const out: PathItem = { ...item };
  for (const verb of VERBS) {
    const op = item[verb];
    if (!op || !Array.isArray(op['security']) || op['security'].length === 0) continue;
    const responses = (op['responses'] ?? {}) as Record<string, unknown>;
    if (!responses['403']) out[verb] = { ...op, responses: { ...responses, '403': forbidden } };
  }
  return out;
}

/** Adds (or extends) path items; operations of an existing path are merged, so modules can share a path. */
export function addPaths(paths: Record<string, PathItem>): void {
  for (const [path, item] of Object.entries(paths)) {
    document.paths[path] = withForbidden({ ...(document.paths[path] ?? {}), ...item });
  }
}

addPaths(basePaths);
addPaths(livekitPaths);

/** The live document (mutable through addPaths only). */
export function openApiDocument(): typeof document {
  return document;
}

/** `/calls/:callId/recording` → `/calls/{callId}/recording`. */
export function openApiPath(pattern: string): string {
  return pattern.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** The router's method names, as OpenAPI verbs. */
export function openApiVerb(method: string): HttpVerb {
  return (method === 'del' ? 'delete' : method) as HttpVerb;
}
