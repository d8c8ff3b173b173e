/**
 * The OpenAPI operations of the Twilio-style routes and of the recordings resource's later additions (tags and
 * consent, the poll answer, start options, rate limits). Request and answer schemas are generated from the zod
 * schemas the routes validate with, so the document cannot drift from what is checked.
 */
import { z } from 'zod';
import { errorResponse, internal, unauthorized, type OpenApiObject, type OperationObject, type PathItem } from '../openapi.js';
import { PatchRecordingSchema, StartSchema } from './call-recordings.js';
import { TwilioCallStatusAnswer, TwilioStartRecordingAnswer, TwilioStartRecordingBody } from './twilio-calls.js';

/** A zod schema as an OpenAPI 3.1 (JSON Schema 2020-12) schema object. */
export function schemaOf(schema: z.ZodType, io: 'input' | 'output' = 'input'): OpenApiObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const secured = { security: [{ bearerAuth: [] }] };
const ok = (description: string, schema: OpenApiObject) => ({ description, content: { 'application/json': { schema } } });
const body = (schema: z.ZodType) => ({ required: true, content: { 'application/json': { schema: schemaOf(schema) } } });
const unavailable = errorResponse('PostgreSQL or the Twilio API is unreachable, or the gateway is shutting down; retry.', [
  'DATABASE_UNAVAILABLE',
  'STORAGE_UNAVAILABLE',
  'SHUTTING_DOWN',
]);
const badRequest = errorResponse('Invalid body or parameters (`details.issues`).', ['BAD_REQUEST', 'CLIENT_KEY_WEAK']);
export const rateLimited = {
  ...errorResponse(
    'More control requests for this call than CONTROL_RATE_LIMIT_PER_MINUTE allows (per organisation, per call, a sliding minute); `details.retryAfterSeconds`.',
    ['RATE_LIMITED'],
  ),
  headers: { 'Retry-After': { description: 'Seconds until the next request for this call is accepted.', schema: { type: 'integer', minimum: 1 } } },
};
const idParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The recording id (uuid) or recording SID (`CR…`).',
  schema: { type: 'string' },
};

const PollAnswer = z.object({
  success: z.literal(true),
  processed: z.number().int().describe('Calls whose recording was downloaded and stored by this run.'),
  details: z.array(
    z.object({
      callSid: z.string(),
      status: z.enum(['uploaded', 'no_recordings', 'twilio_error']),
      recordings: z.array(z.string()).describe('callvault recording SIDs stored by this run.'),
      error: z
        .object({
          code: z.string().describe('A stable error code (NOT_FOUND, CONFLICT, STORAGE_UNAVAILABLE, …).'),
          message: z.string().describe('A fixed sentence per code; never the underlying error text.'),
          twilioStatus: z.number().int().optional(),
        })
        .optional(),
    }),
  ),
});

const twilioStart: OperationObject = {
  operationId: 'twilioStartRecording',
  summary: 'Ask Twilio to record a live call of the organisation’s Twilio account from now on (`calls(sid).recordings.create`)',
  description:
    'Works on any live call of the account, also one that does not stream to this gateway. The status callback is ' +
    '`recording_status_callback`, else this gateway’s `/webhooks/twilio-recording` (which imports the recording when it completes).',
  ...secured,
  requestBody: body(TwilioStartRecordingBody),
  responses: {
    '200': ok('Twilio is recording the call.', schemaOf(TwilioStartRecordingAnswer, 'output')),
    '400': errorResponse('No `call_sid` (the message names it), or another invalid field.', ['BAD_REQUEST']),
    '401': unauthorized,
    '404': errorResponse('Twilio does not know the call (Twilio’s message), or a user-bound key’s call is not its user’s.', ['NOT_FOUND']),
    '409': errorResponse('The call is not in progress, Twilio is already recording it, Twilio refused, or the organisation has no Twilio account.', ['CONFLICT']),
    '429': rateLimited,
    '503': unavailable,
    default: internal,
  },
};

const twilioStatus: OperationObject = {
  operationId: 'twilioCallStatus',
  summary: 'A call’s status at Twilio, its recordings at Twilio, and the recordings of it stored here',
  ...secured,
  parameters: [{ name: 'callSid', in: 'path', required: true, schema: { type: 'string' } }],
  responses: {
    '200': ok('The call.', schemaOf(TwilioCallStatusAnswer, 'output')),
    '400': errorResponse('Not a CallSid.', ['BAD_REQUEST']),
    '401': unauthorized,
    '404': errorResponse('Twilio does not know the call (Twilio’s message).', ['NOT_FOUND']),
    '409': errorResponse('Twilio refused, or the organisation has no Twilio account.', ['CONFLICT']),
    '503': unavailable,
    default: internal,
  },
};

const patchRecording: OperationObject = {
  operationId: 'patchCallRecording',
  summary: 'Set a recording’s tags and consent record (kept in `metadata.tags` and `metadata.consent`, shown in listings)',
  ...secured,
  parameters: [idParameter],
  requestBody: body(PatchRecordingSchema),
  responses: {
    '200': ok('The recording, updated.', { type: 'object', properties: { success: { type: 'boolean' }, recording: { type: 'object' } } }),
    '400': badRequest,
    '401': unauthorized,
    '404': errorResponse("No such recording (also another organisation's, or another user's for a user-bound key).", ['NOT_FOUND']),
    '503': unavailable,
    default: internal,
  },
};

const start: OperationObject = {
  operationId: 'startCallRecording',
  summary: 'Start recording an active call from now on (never retroactively)',
  description:
    '`source: gateway` (default) records the live Media Stream or LiveKit room; `source: twilio` asks Twilio to record any live call of the ' +
    'organisation’s Twilio account (like POST /twilio/start-recording: `recordingChannels` default `dual`, `recordingStatusCallback` default ' +
    'this gateway’s webhook). Options: request > agent policy > server default.',
  ...secured,
  requestBody: body(StartSchema),
  responses: {
    '201': ok('Recording started.', { type: 'object', properties: { success: { type: 'boolean' }, recording: { type: 'object' } } }),
    '400': badRequest,
    '401': unauthorized,
    '404': errorResponse('No active call with this callSid in the organisation (for `twilio`: Twilio does not know it).', ['NOT_FOUND']),
    '409': errorResponse('The call is already being recorded, is not in progress, or Twilio refused.', ['CONFLICT']),
    '429': rateLimited,
    '503': unavailable,
    default: internal,
  },
};

const poll: OperationObject = {
  operationId: 'pollTwilioRecordings',
  summary: 'Run the Twilio recording poller once for the organisation',
  description: 'Per call: `uploaded`, `no_recordings` or `twilio_error` (with a mapped error code). Needs an organisation-wide key.',
  ...secured,
  responses: { '200': ok('Poll results per call.', schemaOf(PollAnswer, 'output')), '401': unauthorized, '503': unavailable, default: internal },
};

/** Operations to merge over the management document (same paths, these verbs replaced or added). */
export function conformPaths(base: Record<string, PathItem>): Record<string, PathItem> {
  const withRateLimit = (path: string): PathItem => {
    const item = base[path];
    const op = item?.post;
    return op ? { post: { ...op, responses: { ...op.responses, '429': rateLimited } } } : {};
  };
  return {
    '/twilio/start-recording': { post: twilioStart },
    '/twilio/call-status/{callSid}': { get: twilioStatus },
    '/api/call-recordings/{id}': { patch: patchRecording },
    '/api/call-recordings/start': { post: start },
    '/api/call-recordings/poll': { post: poll },
    '/api/call-recordings/stop': withRateLimit('/api/call-recordings/stop'),
    '/api/call-recordings/{id}/pause': withRateLimit('/api/call-recordings/{id}/pause'),
    '/api/call-recordings/{id}/resume': withRateLimit('/api/call-recordings/{id}/resume'),
  };
}
