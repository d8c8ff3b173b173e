/** The OpenAPI paths of a call's artifacts (src/api/artifacts.ts): transcript, events, metadata. */
import { z } from 'zod';
import { addPaths, errorResponse, internal, unauthorized, unavailable, type OperationObject } from './openapi.js';

const callId = {
  name: 'callId',
  in: 'path',
  required: true,
  description: 'The Twilio CallSid (or LiveKit room SID) of the call; its callvault id is accepted too.',
  schema: { type: 'string' },
};
const notFound = errorResponse("No such call (also when it is another organisation's, or another user's for a user-bound key).", ['NOT_FOUND']);
const isoMicros = { type: 'string', format: 'date-time', description: 'ISO 8601 UTC with microseconds, e.g. 2026-12-01T14:30:22.123456Z.' };
const identity = {
  conversation_id: { type: 'string', description: "The caller's platform id: the stream custom parameter `conversationId` or a LiveKit room metadata's `conversationId`, else the CallSid / room name." },
  session_id: { type: 'string', description: "callvault's id of the call's recording session: its primary recording's SID (the call's id when it has none)." },
  start_time: isoMicros,
  end_time: { ...isoMicros, type: ['string', 'null'] },
};

function jsonOf(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}

function posting(operationId: string, summary: string, description: string, body: z.ZodType): OperationObject {
  return {
    operationId,
    summary,
    description,
    security: [{ bearerAuth: [] }],
    parameters: [callId],
    requestBody: { required: true, content: { 'application/json': { schema: jsonOf(body) } } },
    responses: {
      '201': {
        description: 'Stored (all of them, or none on an error).',
        content: { 'application/json': { schema: { type: 'object', properties: { stored: { type: 'integer' } } } } },
      },
      '400': errorResponse('The body is not JSON or an entry / event is invalid; `details.issues` names it (e.g. `entries.3.channel: …`).', ['BAD_REQUEST']),
      '401': unauthorized,
      '404': notFound,
      '409': errorResponse(
        "The call has ended in client key mode: its artifacts are sealed under the client key, which the gateway no longer holds, so nothing can be added (ARTIFACTS_SEALED). Post while the call is live.",
        ['ARTIFACTS_SEALED'],
      ),
      '413': errorResponse('The body is over 1 MiB.', ['PAYLOAD_TOO_LARGE']),
      '503': unavailable,
      default: internal,
    },
  };
}

function reading(operationId: string, summary: string, description: string, schema: Record<string, unknown>): OperationObject {
  return {
    operationId,
    summary,
    description,
    security: [{ bearerAuth: [] }],
    parameters: [callId],
    responses: {
      '200': { description: `${summary}, decrypted (server key mode).`, content: { 'application/json': { schema } } },
      '302': {
        description:
          "Client key mode: `Location` is a presigned URL (at most 5 minutes) of the sealed object, a callvault container of format version 2 with content type `application/json` (docs/recording-format.md); decrypt it with the client key, e.g. `npx callvault decrypt --key K in.cvr out.json`.",
        headers: {
          Location: { schema: { type: 'string', format: 'uri' } },
          'X-Callvault-Key-Mode': { schema: { enum: ['client'] } },
        },
      },
      '401': unauthorized,
      '404': notFound,
      '409': errorResponse('Client key mode, and the call has not ended: its artifacts are sealed when it ends (ARTIFACTS_NOT_SEALED).', ['ARTIFACTS_NOT_SEALED']),
      '503': unavailable,
      default: internal,
    },
  };
}

export function addArtifactPaths(schemas: { transcriptPost: z.ZodType; eventsPost: z.ZodType }): void {
  addPaths({
    '/calls/{callId}/transcript': {
      post: posting(
        'postCallTranscript',
        "Add entries to the call's transcript",
        'What a voice-agent bridge posts as it goes (scope `control`): `{ entries: [{ timestamp, channel: caller|bot, type: input|output, text, confidence?, duration_ms? }] }`, at most 1000 per request.',
        schemas.transcriptPost,
      ),
      get: reading('getCallTranscript', 'transcript.json', 'The transcript in time order, timestamps in UTC with microseconds.', {
        type: 'object',
        properties: {
          ...identity,
          entries: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                timestamp: isoMicros,
                channel: { enum: ['caller', 'bot'] },
                type: { enum: ['input', 'output'] },
                text: { type: 'string' },
                confidence: { type: ['number', 'null'] },
                duration_ms: { type: ['number', 'null'] },
              },
            },
          },
        },
      }),
    },
    '/calls/{callId}/events': {
      post: posting(
        'postCallEvents',
        'Add session events to the call',
        'Events of the bot (scope `control`): `{ events: [...] }`; a function call is `{ type: "function_call", timestamp, function_name, arguments?, result?, call_id?, media_ms? }`, any other `{ type, timestamp, media_ms?, data? }`.',
        schemas.eventsPost,
      ),
      get: reading(
        'getCallEvents',
        'session_events.json',
        "Every event of the session in time order: the gateway's (call_started, stream_started with the tracks, recording_started, dtmf, mark, recording_paused/resumed, gap, recording_stopped, stream_stopped with the close code, call_ended) and the posted ones (transcript_entry, function_call, the bot's own); `media_ms` is the position on the call's media timeline where the event has one, else null.",
        {
          type: 'object',
          properties: {
            ...identity,
            events: {
              type: 'array',
              items: {
                type: 'object',
                properties: { timestamp: isoMicros, type: { type: 'string' }, media_ms: { type: ['number', 'null'] }, source: { enum: ['gateway', 'posted'] } },
                additionalProperties: true,
              },
            },
          },
        },
      ),
    },
    '/calls/{callId}/bundle': {
      get: {
        operationId: 'getCallBundle',
        summary: "Everything the call left behind, as one zip",
        description:
          'Server key mode, stereo recordings: a store-only zip streamed with an exact Content-Length (nothing is built in memory) holding ' +
          '`{session_id}_{YYYYMMDD_HHMMSS}/caller_audio.wav, bot_audio.wav, final_stereo_recording.wav, transcript.json, call_metadata.json, session_events.json` ' +
          "(the timestamp is the call's start in UTC).",
        security: [{ bearerAuth: [] }],
        parameters: [callId],
        responses: {
          '200': { description: 'The zip.', content: { 'application/zip': { schema: { type: 'string', format: 'binary' } } } },
          '401': unauthorized,
          '404': errorResponse("No such call or no recording of it (also when the call is another organisation's).", ['NOT_FOUND']),
          '409': errorResponse(
            'The recording is not completed, is in client key mode (CONFLICT, `details.keyMode`), or mixed its tracks into one channel (TRACKS_NOT_SEPARATE).',
            ['CONFLICT', 'TRACKS_NOT_SEPARATE'],
          ),
          '503': unavailable,
          default: internal,
        },
      },
    },
    '/calls/{callId}/metadata': {
      get: reading(
        'getCallMetadata',
        'call_metadata.json',
        'Statistics and metadata: chunks, bytes and seconds of audio the source sent per track (caller / bot), transcript entries, function calls, source, sample rate, channels, key mode, pauses, gaps, and speech time per channel from an energy-based voice-activity detector (`energy-rms-20ms`: 20 ms frames above -40 dBFS; server key mode only, else `speech: null`).',
        {
          type: 'object',
          properties: {
            ...identity,
            duration_seconds: { type: ['number', 'null'] },
            caller_audio_chunks: { type: ['integer', 'null'] },
            bot_audio_chunks: { type: ['integer', 'null'] },
            caller_audio_bytes: { type: ['integer', 'null'] },
            bot_audio_bytes: { type: ['integer', 'null'] },
            caller_audio_duration_seconds: { type: ['number', 'null'] },
            bot_audio_duration_seconds: { type: ['number', 'null'] },
            transcript_entries: { type: 'integer' },
            function_calls: { type: 'array', items: { type: 'object' } },
            source: { type: 'string' },
            recording: { type: ['object', 'null'] },
            speech: { type: ['object', 'null'] },
          },
          additionalProperties: true,
        },
      ),
    },
  });
}
