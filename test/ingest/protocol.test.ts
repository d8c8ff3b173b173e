import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import {
  TWILIO_CLOSE_CODES,
  closeCodeFor,
  closeFrameFor,
  decodeMediaPayload,
  parseTwilioMessage,
} from '../../dist/ingest/twilio/index.js';
import { CallvaultError, ErrorCode } from '../../dist/errors/index.js';
import { ACCOUNT_SID, CALL_SID, STREAM_SID, start, toneMulaw } from './helpers.js';

describe('parseTwilioMessage', () => {
  test('reads a start frame as Twilio sends it', () => {
    expect(parseTwilioMessage(start())).toEqual({
      event: 'start',
      sequenceNumber: 1,
      streamSid: STREAM_SID,
      start: {
        accountSid: ACCOUNT_SID,
        streamSid: STREAM_SID,
        callSid: CALL_SID,
        tracks: ['inbound', 'outbound'],
        customParameters: { tenant: 'acme' },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });
  });

  test.each([
    { name: 'counters as strings', chunk: '3', timestamp: '40', sequenceNumber: '4' },
    { name: 'counters as numbers', chunk: 3, timestamp: 40, sequenceNumber: 4 },
  ])('media with $name', ({ chunk, timestamp, sequenceNumber }) => {
    const text = JSON.stringify({
      event: 'media',
      sequenceNumber,
      media: { track: 'outbound', chunk, timestamp, payload: 'AAAAAAAAAAA=', futureField: 'x' },
      streamSid: STREAM_SID,
      anotherFutureField: { nested: true },
    });
    expect(parseTwilioMessage(text)).toEqual({
      event: 'media',
      sequenceNumber: 4,
      streamSid: STREAM_SID,
      media: { track: 'outbound', chunk: 3, timestamp: 40, payload: 'AAAAAAAAAAA=' },
    });
  });

  test('start without customParameters gets an empty record; sampleRate as a string is accepted', () => {
    const text = JSON.stringify({
      event: 'start',
      start: {
        accountSid: ACCOUNT_SID,
        streamSid: STREAM_SID,
        callSid: CALL_SID,
        tracks: ['inbound'],
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: '8000', channels: 1 },
      },
    });
    const parsed = parseTwilioMessage(text);
    expect(parsed.event === 'start' && parsed.start.customParameters).toEqual({});
    expect(parsed.event === 'start' && parsed.start.mediaFormat.sampleRate).toBe(8000);
  });

  test.each([
    { text: 'not json', code: 'FRAME_MALFORMED' },
    { text: '{"event":42}', code: 'FRAME_MALFORMED' },
    { text: '{"event":"media","media":{}}', code: 'FRAME_MALFORMED' },
    { text: '{"event":"mark"}', code: 'FRAME_MALFORMED' },
    { text: '{"event":"stop","stop":{"accountSid":"AC1","callSid":"CA1"}}', code: 'FRAME_MALFORMED' },
    { text: '{"event":"clear"}', code: 'FRAME_UNKNOWN_EVENT' },
    { text: '{"event":"__proto__"}', code: 'FRAME_UNKNOWN_EVENT' },
  ])('$text → $code', ({ text, code }) => {
    expect(() => parseTwilioMessage(text)).toThrow(expect.objectContaining({ code }));
  });

  test('an unknown event name is cut short in the error details', () => {
    try {
      parseTwilioMessage(JSON.stringify({ event: 'x'.repeat(10_000) }));
      expect.unreachable();
    } catch (err) {
      expect((err as CallvaultError).details).toEqual({ event: 'x'.repeat(64) });
    }
  });
});

describe('decodeMediaPayload', () => {
  test.each([8, 160, 320, 8000])('accepts %i bytes and returns them exactly', (bytes) => {
    const audio = toneMulaw(440, 0, bytes);
    expect(new Uint8Array(decodeMediaPayload(Buffer.from(audio).toString('base64')))).toEqual(audio);
  });

  test.each([
    { name: 'empty', payload: '' },
    { name: '7 bytes', payload: Buffer.alloc(7, 0xff).toString('base64') },
    { name: '161 bytes', payload: Buffer.alloc(161, 0xff).toString('base64') },
    { name: '8008 bytes (1001 ms)', payload: Buffer.alloc(8008, 0xff).toString('base64') },
    { name: '1 MB of base64', payload: 'A'.repeat(1 << 20) },
    { name: 'URL-safe alphabet', payload: Buffer.alloc(160, 0xfb).toString('base64url') + '==' },
    { name: 'spaces', payload: Buffer.alloc(160, 0xff).toString('base64').replace(/(.{8})/, '$1 ') },
    { name: 'padding in the middle', payload: 'AAAA=AAA' + Buffer.alloc(154, 0).toString('base64') },
  ])('refuses $name with FRAME_PAYLOAD_INVALID', ({ payload }) => {
    expect(() => decodeMediaPayload(payload)).toThrow(expect.objectContaining({ code: 'FRAME_PAYLOAD_INVALID' }));
  });
});

describe('close codes', () => {
  test.each([
    { code: ErrorCode.FrameMalformed, close: 4400 },
    { code: ErrorCode.FrameUnknownEvent, close: 4401 },
    { code: ErrorCode.FrameOutOfOrder, close: 4402 },
    { code: ErrorCode.StreamAccountMismatch, close: 4403 },
    { code: ErrorCode.FramePayloadInvalid, close: 4404 },
    { code: ErrorCode.StreamAheadOfClock, close: 4405 },
    { code: ErrorCode.RecordingOptionsInvalid, close: 4406 },
    { code: ErrorCode.ClientKeyWeak, close: 4406 },
    { code: ErrorCode.FrameTooLarge, close: 1009 },
    { code: ErrorCode.Overloaded, close: 1013 },
    { code: ErrorCode.ShuttingDown, close: 1001 },
    { code: ErrorCode.UploadFailed, close: 1011 },
    { code: ErrorCode.Internal, close: 1011 },
  ])('$code → $close', ({ code, close }) => {
    expect(closeCodeFor(code)).toBe(close);
  });

  test('closeFrameFor gives the error code as reason, never the message', () => {
    const err = new CallvaultError(ErrorCode.FrameMalformed, 'frame contained secret-token-123');
    expect(closeFrameFor(err)).toEqual({ code: 4400, reason: 'FRAME_MALFORMED' });
    expect(closeFrameFor(new Error('boom'))).toEqual({ code: 1011, reason: 'INTERNAL' });
  });

  test('docs/ingest.md documents every close code', () => {
    const doc = readFileSync(new URL('../../docs/ingest.md', import.meta.url), 'utf8');
    for (const code of Object.values(TWILIO_CLOSE_CODES)) {
      expect(doc).toMatch(new RegExp(`^\\|\\s*${code}\\s*\\|`, 'm'));
    }
  });
});
