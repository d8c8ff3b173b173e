/** The OpenAPI paths of the transcription resource (src/api/manage/transcription.ts). */
import { z } from 'zod';
import { addPaths, errorResponse, internal, unauthorized, unavailable } from '../openapi.js';

const idParameter = { name: 'id', in: 'path', required: true, description: 'The recording id (uuid) or recording SID (`CR…`).', schema: { type: 'string' } };
const notFound = (extra = '') => errorResponse(`No such recording (also when it is another organisation's)${extra}.`, ['NOT_FOUND']);
const isoMicros = { type: 'string', format: 'date-time', description: 'ISO 8601 UTC with microseconds.' };

const transcription = {
  type: 'object',
  properties: {
    recordingSid: { type: 'string' },
    status: { type: 'string', enum: ['queued', 'in-progress', 'completed', 'failed'] },
    engine: { type: 'string' },
    language: { type: 'string' },
    diarization: { type: 'boolean' },
    channels: {
      type: 'string',
      enum: ['separate', 'mixed'],
      description: '`separate`: each channel transcribed on its own (0 caller, 1 bot); `mixed`: one channel (a mono recording, or `diarization: false`), entries labelled `caller`.',
    },
    attempts: { type: 'integer', description: 'Times a runner claimed the job (more than one after a gateway stopped mid-way).' },
    requestedAt: { type: 'string', format: 'date-time' },
    startedAt: { type: ['string', 'null'], format: 'date-time' },
    finishedAt: { type: ['string', 'null'], format: 'date-time' },
    error: {
      type: ['object', 'null'],
      description: 'When failed: a stable code (TRANSCRIPTION_ENGINE_UNAVAILABLE, TRANSCRIPTION_ENGINE_FAILED, TRANSCRIPTION_TOO_LONG, STORAGE_UNAVAILABLE) and a fixed message.',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
    transcript: {
      type: ['object', 'null'],
      description: 'When completed: transcript.json of the recording (entries timed from the recording’s start).',
      properties: {
        conversation_id: { type: 'string' },
        session_id: { type: 'string', description: 'The recording SID.' },
        start_time: isoMicros,
        end_time: { ...isoMicros, type: ['string', 'null'] },
        entries: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              timestamp: isoMicros,
              channel: { type: 'string', enum: ['caller', 'bot'] },
              type: { type: 'string', enum: ['input', 'output'] },
              text: { type: 'string' },
              confidence: { type: ['number', 'null'] },
              duration_ms: { type: 'number' },
            },
          },
        },
      },
    },
  },
};
const answer = (description: string) => ({
  description,
  content: { 'application/json': { schema: { type: 'object', properties: { success: { type: 'boolean' }, transcription } } } },
});

let added = false;
export function addTranscriptionPaths(body: z.ZodType): void {
  if (added) return;
  added = true;
  addPaths({
    '/api/call-recordings/{id}/transcription': {
      post: {
        operationId: 'startCallRecordingTranscription',
        summary: 'Transcribe a completed server-key recording (a job; poll GET for its status)',
        description:
          'Each channel of a stereo recording is transcribed on its own (channel 0 the caller, 1 the bot) and the entries are added to the call’s transcript ' +
          '(`GET /calls/{callId}/transcript`). A mono recording is transcribed as one mixed channel, kept on the job only. `diarization` defaults to true for ' +
          'stereo, false for mono. The recording’s `metadata` gets `transcriptionRequested` and `transcriptionStatus`.',
        security: [{ bearerAuth: [] }],
        parameters: [idParameter],
        requestBody: { required: false, content: { 'application/json': { schema: z.toJSONSchema(body, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown> } } },
        responses: {
          '202': answer('Queued; `Location` is the transcription resource.'),
          '400': errorResponse('Invalid body (`details.issues`): an engine not offered, a language the engine has no model for.', ['BAD_REQUEST']),
          '401': unauthorized,
          '404': notFound(),
          '409': errorResponse(
            'The recording is not completed or is MP3 (CONFLICT), is in client key mode (TRANSCRIPTION_NEEDS_SERVER_KEY: the server cannot decrypt it), is mono and ' +
              '`diarization: true` was asked (TRACKS_NOT_SEPARATE), or a transcription is queued, in progress or completed already (TRANSCRIPTION_IN_PROGRESS, `details.status`).',
            ['CONFLICT', 'TRANSCRIPTION_NEEDS_SERVER_KEY', 'TRACKS_NOT_SEPARATE', 'TRANSCRIPTION_IN_PROGRESS'],
          ),
          '503': unavailable,
          default: internal,
        },
      },
      get: {
        operationId: 'getCallRecordingTranscription',
        summary: 'The transcription job of a recording: its status and, once completed, the transcript',
        security: [{ bearerAuth: [] }],
        parameters: [idParameter],
        responses: {
          '200': answer('The job.'),
          '401': unauthorized,
          '404': notFound(', or no transcription was requested for it'),
          '503': unavailable,
          default: internal,
        },
      },
    },
  });
}
