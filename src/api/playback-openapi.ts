/** The OpenAPI paths of signed playback URLs (src/api/playback.ts) and of the web console (src/api/console.ts). */
import { z } from 'zod';
import { addPaths, errorResponse, internal, unauthorized, unavailable, type OperationObject } from './openapi.js';

const playbackInvalid = errorResponse(
  'The URL is not a signed playback URL, its signature does not match (tampered, or signed by a key no longer in the keyring), or it expires later than PLAYBACK_URL_TTL_SECONDS allows (PLAYBACK_URL_INVALID); or it has expired (PLAYBACK_URL_EXPIRED: ask for a new one).',
  ['PLAYBACK_URL_INVALID', 'PLAYBACK_URL_EXPIRED'],
);

const audio = (description: string, partial: boolean) => ({
  description,
  headers: {
    'Accept-Ranges': { schema: { type: 'string', const: 'bytes' } },
    'Content-Length': { schema: { type: 'integer' } },
    'X-Recording-Sid': { schema: { type: 'string' } },
    ...(partial ? { 'Content-Range': { schema: { type: 'string', example: 'bytes 0-1023/96044' } } } : {}),
  },
  content: { 'audio/wav': { schema: { type: 'string', format: 'binary' } }, 'audio/mpeg': { schema: { type: 'string', format: 'binary' } } },
});

function playback(verb: 'get' | 'head'): OperationObject {
  return {
    operationId: verb === 'get' ? 'getPlayback' : 'headPlayback',
    summary: verb === 'get' ? 'Play a recording from a signed playback URL (no Authorization header)' : 'Playback headers without the body',
    description:
      'What `POST /calls/{callId}/playback-url` issued: the query carries the organisation, the track, the expiry and an HMAC signature; ' +
      'no Authorization header is needed (an `<audio>` element plays it). The same bytes as `GET /calls/{callId}/recording` ' +
      '(with `track=caller|bot` for one track), with one Range per request (206) and HEAD.',
    security: [],
    parameters: [
      { name: 'recordingId', in: 'path', required: true, description: "The recording's callvault id.", schema: { type: 'string' } },
      { name: 'org', in: 'query', required: true, schema: { type: 'string' } },
      { name: 'track', in: 'query', required: true, schema: { enum: ['stereo', 'caller', 'bot'] } },
      { name: 'exp', in: 'query', required: true, description: 'Expiry, unix seconds.', schema: { type: 'string', pattern: '^\\d+$' } },
      { name: 'sig', in: 'query', required: true, description: 'base64url HMAC-SHA256 (docs/api.md).', schema: { type: 'string' } },
      { name: 'Range', in: 'header', required: false, schema: { type: 'string' } },
    ],
    responses: {
      '200': audio('The whole file.', false),
      '206': audio('The requested byte range.', true),
      '403': playbackInvalid,
      '404': errorResponse('The recording was deleted since the URL was issued.', ['NOT_FOUND']),
      '409': errorResponse('The recording is no longer servable (`details.status`, e.g. failed).', ['CONFLICT']),
      '416': errorResponse('The range starts past the end of the file; `Content-Range: bytes */<size>`.', ['RANGE_NOT_SATISFIABLE']),
      '503': unavailable,
      default: internal,
    },
  };
}

export function addPlaybackPaths(schemas: { request: z.ZodType; ttlSeconds: number }): void {
  addPaths({
    '/calls/{callId}/playback-url': {
      post: {
        operationId: 'createPlaybackUrl',
        summary: 'A short-lived signed URL that plays the call’s recording without an Authorization header',
        description:
          'Scope `read`. Signs a URL for ONE recording (the one `GET /calls/{callId}/recording` serves) and one track ' +
          '(`stereo`: the file as stored; `caller` / `bot`: one channel of a stereo recording), valid for PLAYBACK_URL_TTL_SECONDS ' +
          '(default 600). `url` is absolute (PUBLIC_URL), `path` is the same relative to the gateway. Server key mode only: a ' +
          'client-key recording answers 409 CONFLICT (`details.keyMode: "client"`): the gateway cannot decrypt it.',
        security: [{ bearerAuth: [] }],
        parameters: [{ name: 'callId', in: 'path', required: true, description: 'The Twilio CallSid (or LiveKit room SID) of the call.', schema: { type: 'string' } }],
        requestBody: {
          required: false,
          content: { 'application/json': { schema: z.toJSONSchema(schemas.request, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown> } },
        },
        responses: {
          '201': {
            description: 'The signed URL.',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    url: { type: 'string', format: 'uri' },
                    path: { type: 'string' },
                    expires_at: { type: 'string', format: 'date-time' },
                    recording_sid: { type: 'string' },
                    track: { enum: ['stereo', 'caller', 'bot'] },
                    channels: { type: 'integer' },
                    sample_rate: { type: 'integer' },
                    duration_ms: { type: ['integer', 'null'] },
                    content_type: { enum: ['audio/wav', 'audio/mpeg'] },
                  },
                },
              },
            },
          },
          '400': errorResponse('The body is not JSON or `track` is unknown.', ['BAD_REQUEST']),
          '401': unauthorized,
          '403': errorResponse('The API key lacks the read scope.', ['FORBIDDEN']),
          '404': errorResponse("No recording for this call (also when the call is another organisation's).", ['NOT_FOUND']),
          '409': errorResponse(
            'The recording is not completed (`details.status`), is in client key mode (`details.keyMode`), or `track` was asked of a recording whose tracks were mixed (TRACKS_NOT_SEPARATE).',
            ['CONFLICT', 'TRACKS_NOT_SEPARATE'],
          ),
          '503': unavailable,
          default: internal,
        },
      },
    },
    '/playback/{recordingId}': { get: playback('get'), head: playback('head') },
  });
}

export function addConsolePaths(files: readonly string[]): void {
  const html = { 'text/html': { schema: { type: 'string' } } };
  addPaths({
    '/console': {
      get: {
        operationId: 'getConsole',
        summary: 'The web console (HTML); sign in with an API key kept in sessionStorage',
        description: 'Served with a strict Content-Security-Policy (scripts, styles, media and requests from the gateway only; no inline script).',
        security: [],
        responses: { '200': { description: 'The console page.', content: html }, default: internal },
      },
    },
    '/console/': {
      get: {
        operationId: 'getConsoleSlash',
        summary: 'Redirects to /console (where the page’s relative links resolve)',
        security: [],
        responses: { '302': { description: 'To `../console`.', headers: { Location: { schema: { type: 'string' } } } }, default: internal },
      },
    },
    '/console/{file}': {
      get: {
        operationId: 'getConsoleAsset',
        summary: 'A static file of the web console',
        security: [],
        parameters: [{ name: 'file', in: 'path', required: true, schema: { enum: [...files] } }],
        responses: {
          '200': { description: 'The file.', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } },
          '404': errorResponse('No such file.', ['NOT_FOUND']),
          default: internal,
        },
      },
    },
  });
}
