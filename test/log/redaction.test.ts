/**
 * Secrets never reach a log line: redacted fields, and the request configuration that HTTP client errors
 * (axios under twilio-node, the AWS SDK) carry with their Authorization header.
 */
import { Writable } from 'node:stream';
import { expect, test } from 'vitest';
import { createLogger } from '../../dist/log/index.js';
import { CallvaultError, ErrorCode } from '../../dist/errors/index.js';

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, stream };
}

const SECRET = 'QUNmYWtlOnN1cGVyLXNlY3JldC10b2tlbg==';

/** What an axios error from twilio-node looks like: enumerable config, request and response. */
function transportError(): Error {
  return Object.assign(new Error('timeout of 30000ms exceeded'), {
    code: 'ECONNABORTED',
    config: { url: 'https://api.twilio.com/2010-04-01/x', headers: { Authorization: `Basic ${SECRET}` } },
    request: { _header: `DELETE /x HTTP/1.1\r\nAuthorization: Basic ${SECRET}\r\n` },
    response: { headers: { 'www-authenticate': SECRET } },
  });
}

test.each([
  ['a raw transport error', () => ({ err: transportError() })],
  ['a transport error wrapped as a cause', () => ({ err: new CallvaultError(ErrorCode.UploadFailed, 'delete failed', { cause: transportError() }) })],
  ['an error among several', () => ({ err: new AggregateError([transportError()], 'several failed') })],
  ['redacted fields', () => ({ authToken: SECRET, account: { authToken: SECRET }, headers: { authorization: `Bearer ${SECRET}` }, key: SECRET })],
  ['a SignalWire project token', () => ({ token: SECRET, project: { projectId: 'p', token: SECRET } })],
])('%s never puts the secret in the log line', (_name, fields) => {
  const { lines, stream } = capture();
  const logger = createLogger({ destination: stream });
  logger.warn(fields(), 'could not delete the recording from Twilio');
  expect(lines).toHaveLength(1);
  expect(lines[0]).not.toContain(SECRET);
  expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'could not delete the recording from Twilio' });
});

test('the error itself is still logged: type, message and code', () => {
  const { lines, stream } = capture();
  createLogger({ destination: stream }).error({ err: transportError() }, 'request failed');
  expect(JSON.parse(lines[0]!).err).toMatchObject({ type: 'Error', message: 'timeout of 30000ms exceeded', code: 'ECONNABORTED' });
});
