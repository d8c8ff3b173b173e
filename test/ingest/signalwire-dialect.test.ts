/**
 * SignalWire's identifiers, without sockets: the `signalwire` dialect of the Media Streams parser accepts UUID
 * project ids and call and stream SIDs and nothing else; the `twilio` dialect (the default) is unchanged and
 * refuses them; both parser paths (media fast path, schema) agree. And `SIGNALWIRE_PROJECTS` as the one
 * configuration schema reads it.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { parseTwilioMessage, parseTwilioMessageWithSchema, type StreamDialect } from '../../dist/ingest/twilio/index.js';
import { buildMediaMessage, buildStartMessage, buildStopMessage, randomCallSid, randomStreamSid } from '../../dist/ingest/twilio/simulator.js';
import { loadEnv } from '../../dist/config/index.js';
import { ErrorCode } from '../../dist/errors/index.js';
import { ACCOUNT_SID } from './helpers.js';

const PROJECT = randomUUID();

function code(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? 'THREW';
  }
}

const uuidStart = () => buildStartMessage({ sequenceNumber: 1, accountSid: PROJECT, callSid: randomUUID(), streamSid: randomUUID(), tracks: ['inbound', 'outbound'] });
const twilioStart = () => buildStartMessage({ sequenceNumber: 1, accountSid: ACCOUNT_SID, callSid: randomCallSid(), streamSid: randomStreamSid(), tracks: ['inbound'] });
const media = (streamSid: string) => buildMediaMessage({ sequenceNumber: 2, streamSid, track: 'inbound', chunk: 1, timestampMs: 0, payload: new Uint8Array(160) });

type Case = [name: string, frame: () => string, dialect: StreamDialect, expected: string | null];
const cases: Case[] = [
  ['UUID start on SignalWire', uuidStart, 'signalwire', null],
  ['UUID start on Twilio', uuidStart, 'twilio', ErrorCode.FrameMalformed],
  ['Twilio start on SignalWire', twilioStart, 'signalwire', ErrorCode.FrameMalformed],
  ['Twilio start on Twilio', twilioStart, 'twilio', null],
  ['media of a UUID stream on SignalWire', () => media(randomUUID()), 'signalwire', null],
  ['media of a UUID stream on Twilio', () => media(randomUUID()), 'twilio', ErrorCode.FrameMalformed],
  ['media of an MZ… stream on SignalWire', () => media(randomStreamSid()), 'signalwire', ErrorCode.FrameMalformed],
  ['UUID stop on SignalWire', () => buildStopMessage({ sequenceNumber: 3, streamSid: randomUUID(), accountSid: PROJECT, callSid: randomUUID() }), 'signalwire', null],
  ['UUID stop on Twilio', () => buildStopMessage({ sequenceNumber: 3, streamSid: randomStreamSid(), accountSid: PROJECT, callSid: randomUUID() }), 'twilio', ErrorCode.FrameMalformed],
  [
    'an L16@16000h start on SignalWire (only PCMU is recorded)',
    () =>
      buildStartMessage({
        sequenceNumber: 1,
        accountSid: PROJECT,
        callSid: randomUUID(),
        streamSid: randomUUID(),
        tracks: ['inbound'],
        mediaFormat: { encoding: 'audio/L16', sampleRate: 16000, channels: 1 },
      }),
    'signalwire',
    ErrorCode.FrameMalformed,
  ],
  ['a UUID without hyphens on SignalWire', () => media(randomUUID().replaceAll('-', '')), 'signalwire', ErrorCode.FrameMalformed],
  ['a UUID with a trailing character on SignalWire', () => media(`${randomUUID()}0`), 'signalwire', ErrorCode.FrameMalformed],
];

describe('the signalwire dialect relaxes the three SIDs, for SignalWire only', () => {
  test.each(cases)('%s', (_name, frame, dialect, expected) => {
    const text = frame();
    expect(code(() => parseTwilioMessage(text, dialect))).toBe(expected);
    // The schema path alone says the same, so the media fast path adds nothing of its own.
    expect(code(() => parseTwilioMessageWithSchema(text, dialect))).toBe(expected);
    if (expected === null) expect(parseTwilioMessage(text, dialect)).toEqual(parseTwilioMessageWithSchema(text, dialect));
  });

  test('the default dialect is Twilio', () => {
    expect(code(() => parseTwilioMessage(uuidStart()))).toBe(ErrorCode.FrameMalformed);
  });
});

describe('SIGNALWIRE_PROJECTS', () => {
  test('org:projectId:token:spaceUrl, the Space URL with or without a scheme, reduced to its origin', () => {
    const other = randomUUID();
    const env = loadEnv({ SIGNALWIRE_PROJECTS: `acme:${PROJECT}:PTsecret:example.signalwire.com, globex:${other}:PTother:https://globex.signalwire.com/` });
    expect(env.SIGNALWIRE_PROJECTS).toEqual([
      { org: 'acme', projectId: PROJECT, token: 'PTsecret', spaceUrl: 'https://example.signalwire.com' },
      { org: 'globex', projectId: other, token: 'PTother', spaceUrl: 'https://globex.signalwire.com' },
    ]);
  });

  test.each([
    ['a project id that is not a UUID', `acme:${ACCOUNT_SID}:PTsecret:example.signalwire.com`],
    ['no token', `acme:${PROJECT}::example.signalwire.com`],
    ['no Space URL', `acme:${PROJECT}:PTsecret`],
    ['a Space URL with a path', `acme:${PROJECT}:PTsecret:https://example.signalwire.com/api/laml`],
    ['a Space URL with credentials', `acme:${PROJECT}:PTsecret:https://u:p@example.signalwire.com`],
    ['a Space URL of another scheme', `acme:${PROJECT}:PTsecret:ftp://example.signalwire.com`],
    ['a bad organisation id', `Acme!:${PROJECT}:PTsecret:example.signalwire.com`],
  ])('%s: CONFIG_INVALID naming the variable, never the token', (_name, value) => {
    let error: { code?: string; message?: string } | undefined;
    try {
      loadEnv({ SIGNALWIRE_PROJECTS: value });
    } catch (err) {
      error = err as { code?: string; message?: string };
    }
    expect(error?.code).toBe(ErrorCode.ConfigInvalid);
    expect(error?.message).toContain('SIGNALWIRE_PROJECTS');
    expect(error?.message).not.toContain('PTsecret');
  });
});
