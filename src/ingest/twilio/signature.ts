/**
 * Twilio signs the WebSocket upgrade of a media stream with X-Twilio-Signature: an HMAC-SHA1 of the
 * exact URL it connected to, keyed with the account's auth token. A GET upgrade has no body params.
 * Auth tokens never leave this module in logs or errors.
 */
// The webhooks module alone: the package root would load the whole REST client.
import webhooks from 'twilio/lib/webhooks/webhooks.js';
import { CallvaultError, ErrorCode } from '../../errors/index.js';

export interface TwilioAccount {
  org: string;
  accountSid: string;
  authToken: string;
}

/**
 * The URL Twilio signed for an upgrade that reached us at `pathAndQuery`: PUBLIC_URL's host with
 * the WebSocket scheme (`https` → `wss`, `http` → `ws`). A path in PUBLIC_URL is taken as a prefix
 * that a reverse proxy strips before the request reaches us. The path and query are used verbatim
 * because Twilio signs the exact characters it sent.
 */
export function streamUrlForSignature(publicUrl: string, pathAndQuery: string): string {
  let base: URL;
  try {
    base = new URL(publicUrl);
  } catch (cause) {
    throw new CallvaultError(ErrorCode.ConfigInvalid, 'PUBLIC_URL is not a URL', { cause });
  }
  const scheme = WS_SCHEME_FOR[base.protocol];
  if (scheme === undefined) {
    throw new CallvaultError(ErrorCode.ConfigInvalid, 'PUBLIC_URL must be an http(s) or ws(s) URL', {
      details: { protocol: base.protocol },
    });
  }
  if (!pathAndQuery.startsWith('/')) {
    throw new CallvaultError(ErrorCode.BadRequest, 'request path must start with /');
  }
  const prefix = base.pathname.replace(/\/+$/, '');
  return `${scheme}//${base.host}${prefix}${pathAndQuery}`;
}

const WS_SCHEME_FOR: Record<string, string | undefined> = {
  'https:': 'wss:',
  'http:': 'ws:',
  'wss:': 'wss:',
  'ws:': 'ws:',
};

/**
 * The account whose auth token produced `signature` for `url`, or null when none did (or the
 * header is missing). Every account is tried so the time taken does not reveal which one matched.
 */
export function identifyTwilioAccount<A extends TwilioAccount>(
  accounts: readonly A[],
  signature: string | undefined,
  url: string,
): A | null {
  if (signature === undefined || signature.length === 0) return null;
  let match: A | null = null;
  for (const account of accounts) {
    if (signatureMatches(account.authToken, signature, url) && match === null) match = account;
  }
  return match;
}

function signatureMatches(authToken: string, signature: string, url: string): boolean {
  try {
    return webhooks.validateRequest(authToken, signature, url, {});
  } catch {
    // validateRequest parses the URL with `new URL`; a URL it cannot parse matches nothing.
    return false;
  }
}

/** The X-Twilio-Signature Twilio would send when opening a stream to `url`. */
export function signStreamUrl(authToken: string, url: string): string {
  return webhooks.getExpectedTwilioSignature(authToken, url, {});
}
