/** The management routes' part of the OpenAPI document. */
import { addPaths, errorResponse, internal, unauthorized, type OperationObject, type PathItem } from '../openapi.js';
import { conformPaths } from './openapi-conform.js';

const unavailable = errorResponse(
  'PostgreSQL, object storage or the Twilio API is unreachable, the gateway is shutting down, or (a control request for a call another gateway holds) that gateway is dead or did not answer in time (`OWNER_UNAVAILABLE`, `details.ownerGateway`); retry.',
  ['DATABASE_UNAVAILABLE', 'STORAGE_UNAVAILABLE', 'SHUTTING_DOWN', 'OWNER_UNAVAILABLE'],
);
const badRequest = errorResponse('Invalid parameters or body (`details.issues`).', ['BAD_REQUEST', 'CLIENT_KEY_WEAK']);
const recordingNotFound = errorResponse("No such recording (also when it is another organisation's).", ['NOT_FOUND']);
const ok = (description: string, schema: Record<string, unknown> = { type: 'object' }) => ({
  description,
  content: { 'application/json': { schema } },
});
const jsonBody = (schema: Record<string, unknown>, required = true) => ({ required, content: { 'application/json': { schema } } });
const secured = { security: [{ bearerAuth: [] }] };
const idParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The recording id (uuid) or recording SID (`CR…`); for pause/resume also a Twilio-side recording SID (`RE…`).',
  schema: { type: 'string' },
};

const recordingSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    recordingSid: { type: 'string', pattern: '^CR[0-9a-f]{32}$' },
    callSid: { type: ['string', 'null'] },
    status: {
      type: 'string',
      enum: ['in-progress', 'uploading', 'interrupted', 'completed', 'failed'],
      description: '`interrupted`: its gateway stopped heartbeating mid-recording; it goes on when that gateway (or a replacement on its volume) restarts.',
    },
    duration: { type: ['integer', 'null'], description: 'Whole seconds (rounded); `durationMs` is exact.' },
    durationMs: { type: ['integer', 'null'] },
    url: { type: 'string', format: 'uri', description: 'This API’s media URL for the recording.' },
    mediaType: { type: 'string', const: 'audio' },
    contentType: { type: 'string', enum: ['audio/wav', 'audio/mpeg'], description: 'What `/media` serves in server key mode.' },
    source: { type: 'string', enum: ['gateway', 'livekit', 'twilio', 'signalwire', 'elevenlabs'] },
    channels: { type: 'integer' },
    format: { type: 'string', enum: ['wav', 'mp3'], description: 'The audio `/media` serves (decrypted): `mp3` for ElevenLabs recordings, else `wav`.' },
    container: { type: 'string', const: 'cvr1', description: 'The encrypted object’s format (docs/recording-format.md).' },
    sampleRate: { type: 'integer' },
    size: { type: ['integer', 'null'], description: 'Bytes of the encrypted object.' },
    keyMode: { type: 'string', enum: ['server', 'client'] },
    ownerGateway: { type: ['string', 'null'], description: 'The gateway (`GATEWAY_ID`) whose spool holds the recording; null for imports made before fleets.' },
    startTime: { type: 'string', format: 'date-time' },
    endTime: { type: ['string', 'null'], format: 'date-time' },
    metadata: { type: 'object', additionalProperties: true, description: 'Includes `pauses` for paused recordings.' },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
};

const query = (name: string, description: string, schema: Record<string, unknown>) => ({ name, in: 'query', required: false, description, schema });

const list: OperationObject = {
  operationId: 'listCallRecordings',
  summary: "List the organisation's recordings, newest first",
  ...secured,
  parameters: [
    query('page', '1-based page number (default 1).', { type: 'integer', minimum: 1 }),
    query('limit', 'Recordings per page (default 20, at most 100).', { type: 'integer', minimum: 1, maximum: 100 }),
    query('callSid', 'Only this call’s recordings (Twilio CallSid or LiveKit room SID).', { type: 'string' }),
    query('status', 'Only recordings in this status (`in_progress` is accepted too).', { type: 'string', enum: ['in-progress', 'uploading', 'interrupted', 'completed', 'failed', 'in_progress'] }),
    query('source', 'Only recordings from this source.', { type: 'string', enum: ['gateway', 'livekit', 'twilio', 'signalwire', 'elevenlabs'] }),
    query('fromDate', 'ISO 8601; recordings started at or after it.', { type: 'string', format: 'date-time' }),
    query('toDate', 'ISO 8601; recordings started before it.', { type: 'string', format: 'date-time' }),
  ],
  responses: {
    '200': ok('A page of recordings.', {
      type: 'object',
      properties: {
        success: { type: 'boolean' },
        count: { type: 'integer' },
        total: { type: 'integer' },
        page: { type: 'integer' },
        pages: { type: 'integer' },
        recordings: { type: 'array', items: recordingSchema },
      },
    }),
    '400': badRequest,
    '401': unauthorized,
    '503': unavailable,
    default: internal,
  },
};

const binary = { schema: { type: 'string', format: 'binary' } };
const mediaContent = { 'audio/wav': binary, 'audio/mpeg': binary };

const controlConflict = (what: string) => errorResponse(what, ['CONFLICT']);

const paths: Record<string, PathItem> = {
  '/api/call-recordings': { get: list },
  '/api/call-recordings/{id}': {
    get: {
      operationId: 'getCallRecording2',
      summary: 'A recording with every field, and the call it belongs to',
      ...secured,
      parameters: [idParameter],
      responses: {
        '200': ok('The recording.', { type: 'object', properties: { success: { type: 'boolean' }, recording: recordingSchema } }),
        '401': unauthorized,
        '404': recordingNotFound,
        '503': unavailable,
        default: internal,
      },
    },
    delete: {
      operationId: 'deleteCallRecording2',
      summary: 'Delete one recording: its object and its metadata (a live one is stopped first)',
      ...secured,
      parameters: [idParameter],
      responses: { '204': { description: 'Deleted.' }, '401': unauthorized, '404': recordingNotFound, '503': unavailable, default: internal },
    },
  },
  '/api/call-recordings/{id}/media': {
    get: {
      operationId: 'getCallRecordingMedia',
      summary: 'The recording’s audio, like GET /calls/{callId}/recording',
      description:
        'Server key mode: a PCM16 WAV decrypted while it streams (an MP3 recording: `audio/mpeg`, the MP3 bytes as received, no WAV header), with Range support. ' +
        'Client key mode: 302 to a presigned URL of the encrypted object.',
      ...secured,
      parameters: [idParameter, { name: 'Range', in: 'header', required: false, schema: { type: 'string' } }],
      responses: {
        '200': { description: 'The whole file: a WAV, or the MP3 as stored for MP3 recordings (ElevenLabs).', content: mediaContent },
        '206': { description: 'The requested byte range of that file.', content: mediaContent },
        '302': { description: 'Client key mode: presigned URL of the encrypted object.', headers: { Location: { schema: { type: 'string' } } } },
        '401': unauthorized,
        '404': recordingNotFound,
        '409': controlConflict('The recording is not completed (`details.status`).'),
        '416': errorResponse('The range starts past the end of the WAV file.', ['RANGE_NOT_SATISFIABLE']),
        '503': unavailable,
        default: internal,
      },
    },
  },
  '/api/call-recordings/start': {
    post: {
      operationId: 'startCallRecording',
      summary: 'Start recording an active call from now on (never retroactively)',
      description:
        '`source: gateway` (default) records the live Media Stream or LiveKit room; `source: twilio` asks Twilio to record the call ' +
        '(dual channel; its status callback brings the recording in); `source: signalwire` does the same through the SignalWire ' +
        "project's Space (callback `/webhooks/signalwire-recording`). Options: request > agent policy > server default.",
      ...secured,
      requestBody: jsonBody({
        type: 'object',
        required: ['callSid'],
        properties: {
          callSid: { type: 'string' },
          recordingTrack: { type: 'string', enum: ['inbound', 'outbound', 'both'], default: 'both' },
          stereo: { type: 'boolean', default: false, description: 'true: caller left, agent right; false (default): mono, everyone mixed.' },
          key: { type: 'string', description: 'Client key: at least 8 characters (a passphrase, stretched with scrypt), or hex/base64 of 16+ random bytes (HKDF).' },
          source: { type: 'string', enum: ['gateway', 'twilio', 'signalwire'], default: 'gateway' },
        },
      }),
      responses: {
        '201': ok('Recording started.'),
        '400': badRequest,
        '401': unauthorized,
        '404': errorResponse('No active call with this callSid in the organisation.', ['NOT_FOUND']),
        '409': controlConflict('The call is already being recorded (or Twilio refused).'),
        '503': unavailable,
        default: internal,
      },
    },
  },
  '/api/call-recordings/stop': {
    post: {
      operationId: 'stopCallRecording',
      summary: 'Stop one recording (`recordingSid`) or every recording of a call (`callSid`)',
      ...secured,
      requestBody: jsonBody({ type: 'object', properties: { recordingSid: { type: 'string' }, callSid: { type: 'string' } } }),
      responses: {
        '200': ok('Stopped; `stopped` lists what was.'),
        '400': badRequest,
        '401': unauthorized,
        '404': errorResponse('No such recording, or nothing is recording the call.', ['NOT_FOUND']),
        '409': controlConflict('The recording is not in progress (`details.status`).'),
        '503': unavailable,
        default: internal,
      },
    },
  },
  '/api/call-recordings/poll': {
    post: {
      operationId: 'pollTwilioRecordings',
      summary: 'Run the Twilio recording poller once for the organisation',
      description: 'Answers per call: `uploaded`, `no_recordings` or `twilio_error`.',
      ...secured,
      responses: { '200': ok('Poll results per call.'), '401': unauthorized, '503': unavailable, default: internal },
    },
  },
};

paths['/api/call-recordings/{id}/retry'] = {
  post: {
    operationId: 'retryCallRecording',
    summary: 'Finish a failed or interrupted recording from the spool this gateway holds, now rather than at the next start',
    description:
      'The recording is rebuilt from its frame journal; the upload and completion then go on in the background (poll the recording for `completed`).',
    ...secured,
    parameters: [idParameter],
    responses: {
      '202': ok('Rebuilt from the spool; uploading.'),
      '401': unauthorized,
      '404': recordingNotFound,
      '409': controlConflict('Already complete, still in progress, already being retried, or no spool on this gateway.'),
      '503': unavailable,
      default: internal,
    },
  },
};

for (const action of ['pause', 'resume'] as const) {
  paths[`/api/call-recordings/{id}/${action}`] = {
    post: {
      operationId: `${action}CallRecording`,
      summary:
        action === 'pause'
          ? 'Pause a recording: no audio reaches storage; `silence` keeps the timeline, `skip` removes the span'
          : 'Resume a paused recording',
      ...secured,
      parameters: [idParameter],
      ...(action === 'pause'
        ? { requestBody: jsonBody({ type: 'object', properties: { behavior: { type: 'string', enum: ['skip', 'silence'], default: 'silence' } } }, false) }
        : {}),
      responses: {
        '200': ok(action === 'pause' ? 'Paused; `pause` is the pause record.' : 'Resumed.'),
        '400': badRequest,
        '401': unauthorized,
        '404': recordingNotFound,
        '409': controlConflict(action === 'pause' ? 'Not recording, or already paused.' : 'Not recording, or not paused.'),
        '503': unavailable,
        default: internal,
      },
    },
  };
}

const agentParameter = { name: 'agentId', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9._:@-]{1,200}$' } };
const agentSchema = {
  type: 'object',
  properties: {
    agentId: { type: 'string' },
    options: {
      type: 'object',
      properties: {
        recording: {
          type: 'object',
          properties: {
            enabled: { type: 'boolean' },
            stereo: { type: 'boolean', default: false },
            agentIdentity: { type: 'string', description: 'LiveKit: the identity of the participant who is this agent (right channel in stereo).' },
            keySet: { type: 'boolean', description: 'A client key is set (never returned).' },
          },
        },
      },
    },
  },
};
const agentNotFound = errorResponse("No such agent (also when it is another organisation's).", ['NOT_FOUND']);
paths['/api/agents/{agentId}'] = {
  put: {
    operationId: 'putAgent',
    summary: "Create or replace an agent's recording policy",
    ...secured,
    parameters: [agentParameter],
    requestBody: jsonBody({
      type: 'object',
      required: ['options'],
      properties: { options: { type: 'object', properties: { recording: { $ref: '#/components/schemas/RecordingOptions' } } } },
    }),
    responses: {
      '200': ok('Replaced.', agentSchema),
      '201': ok('Created.', agentSchema),
      '400': badRequest,
      '401': unauthorized,
      '503': unavailable,
      default: internal,
    },
  },
  get: {
    operationId: 'getAgent',
    summary: "An agent's recording policy (the key is never returned)",
    ...secured,
    parameters: [agentParameter],
    responses: { '200': ok('The policy.', agentSchema), '400': badRequest, '401': unauthorized, '404': agentNotFound, '503': unavailable, default: internal },
  },
  delete: {
    operationId: 'deleteAgent',
    summary: 'Delete the agent, its policy and its key',
    ...secured,
    parameters: [agentParameter],
    responses: { '204': { description: 'Deleted.' }, '400': badRequest, '401': unauthorized, '404': agentNotFound, '503': unavailable, default: internal },
  },
};

const retentionSchema = {
  type: 'object',
  properties: {
    success: { type: 'boolean', const: true },
    retention: {
      type: 'object',
      required: ['days'],
      properties: {
        days: {
          type: ['integer', 'null'],
          minimum: 1,
          maximum: 36500,
          description: 'Finished recordings that ended more than this many days ago are deleted by the retention sweeper; null: kept forever.',
        },
      },
    },
  },
};
paths['/api/retention'] = {
  get: {
    operationId: 'getRetention',
    summary: "The organisation's retention period",
    ...secured,
    responses: { '200': ok('The retention period.', retentionSchema), '401': unauthorized, '503': unavailable, default: internal },
  },
  put: {
    operationId: 'putRetention',
    summary: "Set (or, with `days: null`, clear) the organisation's retention period (admin scope, organisation-wide key)",
    description:
      'The retention sweeper (every `RETENTION_SWEEP_INTERVAL_MINUTES`) deletes the organisation\'s completed and failed recordings that ' +
      'ended more than `days` days ago, as `DELETE /calls/{callId}/recording` does (object, spool files, row), and the call\'s transcript ' +
      'entries and events once no recording of the call is left. Recordings in progress or uploading are never deleted.',
    ...secured,
    requestBody: jsonBody({
      type: 'object',
      required: ['days'],
      additionalProperties: false,
      properties: { days: { type: ['integer', 'null'], minimum: 1, maximum: 36500 } },
    }),
    responses: { '200': ok('Stored.', retentionSchema), '400': badRequest, '401': unauthorized, '503': unavailable, default: internal },
  },
};
const gatewaySchema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'GATEWAY_ID.' },
    version: { type: 'string' },
    alive: { type: 'boolean', description: 'The last heartbeat is younger than GATEWAY_DEAD_AFTER_SECONDS.' },
    startedAt: { type: 'string', format: 'date-time' },
    lastHeartbeat: { type: 'string', format: 'date-time' },
    heartbeatAgeMs: { type: 'integer', description: 'On the database’s clock.' },
    activeCalls: { type: 'integer', description: 'Live calls at the last heartbeat.' },
    internalUrl: { type: ['string', 'null'], description: 'Where peers forward control requests.' },
    leases: { type: 'array', items: { type: 'string' }, description: 'Fleet-wide jobs whose unexpired lease it holds.' },
  },
};
paths['/api/gateways'] = {
  get: {
    operationId: 'listGateways',
    summary: 'The fleet: every gateway heartbeating into this database, alive or dead, and who holds each fleet-wide job',
    description: 'Takes an organisation-wide key with the admin scope. Names no call or recording of any organisation.',
    ...secured,
    responses: {
      '200': ok('The gateways (by id) and the leases.', {
        type: 'object',
        properties: {
          success: { type: 'boolean' },
          self: { type: 'string', description: 'The id of the gateway that answered.' },
          deadAfterMs: { type: 'integer' },
          gateways: { type: 'array', items: gatewaySchema },
          leases: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                name: { type: 'string' },
                holder: { type: 'string' },
                acquiredAt: { type: 'string', format: 'date-time' },
                expiresAt: { type: 'string', format: 'date-time' },
              },
            },
          },
        },
      }),
      '401': unauthorized,
      '503': unavailable,
      default: internal,
    },
  },
};

paths['/webhooks/twilio-recording'] = {
  post: {
    operationId: 'twilioRecordingStatusCallback',
    summary: "Twilio's RecordingStatusCallback (form-encoded, X-Twilio-Signature verified)",
    parameters: [{ name: 'X-Twilio-Signature', in: 'header', required: true, schema: { type: 'string' } }],
    responses: {
      '200': ok('`outcome`: `stored` (`status`: `completed` or `uploading`), `duplicate` (already stored) or `ignored` (not a completed recording).'),
      '400': errorResponse('Missing or malformed RecordingSid/CallSid, or a recording that is not PCM16.', ['BAD_REQUEST']),
      '403': errorResponse('Unknown AccountSid or bad signature.', ['SIGNATURE_INVALID']),
      '409': controlConflict('A concurrent delivery is being undone; Twilio retries.'),
      '503': unavailable,
      default: internal,
    },
  },
};

paths['/webhooks/signalwire-recording'] = {
  post: {
    operationId: 'signalWireRecordingStatusCallback',
    summary: "SignalWire's recording status callback (form-encoded, X-SignalWire-Signature verified with the project token)",
    description:
      '`AccountSid` is the project id; `RecordingSid` and `CallSid` are UUIDs. `X-Twilio-Signature` is checked when ' +
      '`X-SignalWire-Signature` is absent. The recording is fetched from the project\'s Space, never from `RecordingUrl`.',
    parameters: [{ name: 'X-SignalWire-Signature', in: 'header', required: true, schema: { type: 'string' } }],
    responses: {
      '200': ok('`outcome`: `stored` (`status`: `completed` or `uploading`), `duplicate` (already stored) or `ignored` (not a completed recording).'),
      '400': errorResponse('Missing or malformed RecordingSid/CallSid, or a recording that is not PCM16.', ['BAD_REQUEST']),
      '403': errorResponse('Unknown project id or bad signature (one answer for both).', ['SIGNATURE_INVALID']),
      '409': controlConflict('A concurrent delivery is being undone; SignalWire retries.'),
      '503': unavailable,
      default: internal,
    },
  },
};

paths['/webhooks/elevenlabs-post-call'] = {
  post: {
    operationId: 'elevenLabsPostCallWebhook',
    summary: "ElevenLabs' post-call webhook (ElevenLabs-Signature verified); `post_call_audio` stores the conversation's MP3, `post_call_transcription` its transcript",
    description:
      'The signature `t=<unix s>,v0=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` is checked against every organisation\'s ' +
      '`ELEVENLABS_WEBHOOK_SECRETS` entry (the match picks the organisation) and must be at most 30 minutes old. ' +
      'The MP3 is stored undecoded and encrypted, linked to the Twilio call when the payload carries its CallSid ' +
      '(`data.metadata.phone_call.call_sid` or `data.conversation_initiation_client_data.dynamic_variables.system__call_sid`), ' +
      'else to a call keyed by the conversation id. Options: the agent policy of `data.agent_id`, then the server default. ' +
      '`post_call_transcription` stores `data.transcript` as the linked call\'s transcript (the call of the conversation\'s ' +
      'stored audio first, then the same links): `user` turns as `caller`/`input`, `agent` turns as `bot`/`output`, each at ' +
      '`data.metadata.start_time_unix_secs` (else the call\'s start) plus its `time_in_call_secs`; turns without text are left out. ' +
      'Other event types answer 200 and are ignored. Each conversation\'s audio and transcript are stored once per organisation. ' +
      'The header\'s shape and timestamp are checked before the body is read.',
    parameters: [{ name: 'ElevenLabs-Signature', in: 'header', required: true, schema: { type: 'string' } }],
    requestBody: jsonBody({
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string', description: '`post_call_audio` and `post_call_transcription` are stored; anything else is ignored.' },
        event_timestamp: { type: 'integer' },
        data: {
          type: 'object',
          properties: {
            agent_id: { type: 'string' },
            conversation_id: { type: 'string' },
            full_audio: { type: 'string', contentEncoding: 'base64', contentMediaType: 'audio/mpeg' },
            transcript: {
              type: 'array',
              maxItems: 20000,
              items: {
                type: 'object',
                required: ['role', 'time_in_call_secs'],
                properties: {
                  role: { type: 'string', enum: ['user', 'agent'] },
                  message: { type: ['string', 'null'], maxLength: 100000 },
                  time_in_call_secs: { type: 'number', minimum: 0 },
                },
              },
            },
          },
        },
      },
    }),
    responses: {
      '200': ok('`outcome`: `stored` (`status`: `completed`, or `uploading` when the audio is durable in the spool and S3 has not taken it yet), `duplicate` (already stored), `disabled` (the agent policy or default says not to record) or `ignored` (another event type). A stored transcript answers `callId` (the linked call\'s CallSid / external id), `entries` (how many) and `linkedBy`.'),
      '400': errorResponse('Not JSON, a `post_call_audio` or `post_call_transcription` payload missing fields or with invalid ones (`details.issues` names them), audio that is not base64, or a body over 32 MiB.', ['BAD_REQUEST', 'CLIENT_KEY_WEAK']),
      '401': errorResponse('Missing or malformed signature, a timestamp more than 30 minutes off, or no configured secret matches.', ['SIGNATURE_INVALID']),
      '409': controlConflict('A concurrent delivery is being undone; ElevenLabs retries.'),
      '503': errorResponse('PostgreSQL or object storage unreachable, the gateway shutting down, or 8 deliveries already being read (`OVERLOADED`, with Retry-After, before the body is read); retry.', [
        'DATABASE_UNAVAILABLE',
        'STORAGE_UNAVAILABLE',
        'SHUTTING_DOWN',
        'OVERLOADED',
      ]),
      default: internal,
    },
  },
};

let added = false;
export function addManagePaths(): void {
  if (added) return;
  added = true;
  addPaths(paths);
  addPaths(conformPaths(paths));
}
