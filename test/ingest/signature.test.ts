import { createHmac } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { identifyTwilioAccount, signStreamToken, signStreamUrl, streamUrlForSignature, verifyStreamToken } from '../../dist/ingest/twilio/index.js';

const accounts = [
  { org: 'alpha', accountSid: 'AC00000000000000000000000000000001', authToken: 'token-alpha-0123456789abcdef' },
  { org: 'bravo', accountSid: 'AC00000000000000000000000000000002', authToken: 'token-bravo-0123456789abcdef' },
  { org: 'charlie', accountSid: 'AC00000000000000000000000000000003', authToken: 'token-charlie-0123456789abcd' },
];
const URL_SIGNED = 'wss://gw.example.com/twilio/media?tenant=bravo&x=1';

describe('streamUrlForSignature', () => {
  test.each([
    { publicUrl: 'https://gw.example.com', path: '/twilio/media', url: 'wss://gw.example.com/twilio/media' },
    { publicUrl: 'https://gw.example.com/', path: '/twilio/media?a=1&b=2', url: 'wss://gw.example.com/twilio/media?a=1&b=2' },
    { publicUrl: 'http://localhost:8080', path: '/twilio/media', url: 'ws://localhost:8080/twilio/media' },
    { publicUrl: 'https://gw.example.com:8443', path: '/twilio/media', url: 'wss://gw.example.com:8443/twilio/media' },
    { publicUrl: 'https://example.com/callvault/', path: '/twilio/media', url: 'wss://example.com/callvault/twilio/media' },
    { publicUrl: 'wss://gw.example.com', path: "/twilio/media?q=it's", url: "wss://gw.example.com/twilio/media?q=it's" },
  ])('$publicUrl + $path → $url', ({ publicUrl, path, url }) => {
    expect(streamUrlForSignature(publicUrl, path)).toBe(url);
  });

  test.each([
    { publicUrl: 'ftp://gw.example.com', code: 'CONFIG_INVALID' },
    { publicUrl: 'not a url', code: 'CONFIG_INVALID' },
  ])('refuses PUBLIC_URL $publicUrl', ({ publicUrl, code }) => {
    expect(() => streamUrlForSignature(publicUrl, '/twilio/media')).toThrow(expect.objectContaining({ code }));
  });
});

describe('signStreamUrl', () => {
  test('is Twilio’s HMAC-SHA1 of the URL keyed by the auth token, base64', () => {
    const expected = createHmac('sha1', 'secret').update('wss://gw.example.com/twilio/media').digest('base64');
    expect(signStreamUrl('secret', 'wss://gw.example.com/twilio/media')).toBe(expected);
  });
});

describe('identifyTwilioAccount', () => {
  test.each(accounts.map((a) => ({ org: a.org, account: a })))('identifies $org among three accounts', ({ account }) => {
    const signature = signStreamUrl(account.authToken, URL_SIGNED);
    expect(identifyTwilioAccount(accounts, signature, URL_SIGNED)).toBe(account);
  });

  test('accepts the URL the gateway rebuilds from PUBLIC_URL and the request path', () => {
    const signature = signStreamUrl(accounts[1]!.authToken, URL_SIGNED);
    const rebuilt = streamUrlForSignature('https://gw.example.com', '/twilio/media?tenant=bravo&x=1');
    expect(identifyTwilioAccount(accounts, signature, rebuilt)?.org).toBe('bravo');
  });

  const bravoSignature = signStreamUrl(accounts[1]!.authToken, URL_SIGNED);
  test.each([
    { name: 'a signature from an unknown token', signature: signStreamUrl('not-a-configured-token', URL_SIGNED), url: URL_SIGNED },
    { name: 'no signature header', signature: undefined, url: URL_SIGNED },
    { name: 'an empty signature header', signature: '', url: URL_SIGNED },
    { name: 'a truncated signature', signature: bravoSignature.slice(0, -2), url: URL_SIGNED },
    { name: 'another path', signature: bravoSignature, url: 'wss://gw.example.com/twilio/other?tenant=bravo&x=1' },
    { name: 'another query', signature: bravoSignature, url: 'wss://gw.example.com/twilio/media?tenant=alpha&x=1' },
    { name: 'no query', signature: bravoSignature, url: 'wss://gw.example.com/twilio/media' },
    { name: 'another host', signature: bravoSignature, url: 'wss://evil.example.com/twilio/media?tenant=bravo&x=1' },
    { name: 'the https scheme instead of wss', signature: bravoSignature, url: 'https://gw.example.com/twilio/media?tenant=bravo&x=1' },
    {
      name: 'an http-signed URL checked as ws',
      signature: signStreamUrl(accounts[1]!.authToken, 'http://gw.example.com/twilio/media'),
      url: 'ws://gw.example.com/twilio/media',
    },
    { name: 'an unparseable URL', signature: bravoSignature, url: 'not a url' },
  ])('refuses $name', ({ signature, url }) => {
    expect(identifyTwilioAccount(accounts, signature, url)).toBeNull();
  });

  test('an empty account list identifies nobody', () => {
    expect(identifyTwilioAccount([], bravoSignature, URL_SIGNED)).toBeNull();
  });
});

/** The 43rd base64url character of a 32-byte MAC holds 4 of its bits and 2 spare ones: flip a spare bit, same bytes. */
function respellLast(sig: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const respelled = `${sig.slice(0, -1)}${alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1]}`;
  expect(respelled).not.toBe(sig);
  expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
  return respelled;
}

describe('verifyStreamToken', () => {
  const masterKey = new Uint8Array(32).fill(5);
  const now = Date.UTC(2026, 0, 1);
  const callSid = `CA${'0123456789abcdef'.repeat(2)}`;
  const token = signStreamToken(masterKey, callSid, now + 60_000);

  test('accepts the token it signed', () => {
    expect(verifyStreamToken(token, [masterKey], now, 3_600_000)).toEqual({ callSid, expiresAtMs: now + 60_000 });
  });

  test('refuses the signature respelled in its last character (same bytes, another text) with STREAM_TOKEN_INVALID', () => {
    const dot = token.lastIndexOf('.');
    const respelled = `${token.slice(0, dot + 1)}${respellLast(token.slice(dot + 1))}`;
    expect(() => verifyStreamToken(respelled, [masterKey], now, 3_600_000)).toThrowError(expect.objectContaining({ code: 'STREAM_TOKEN_INVALID' }));
  });
});
