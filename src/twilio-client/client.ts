/**
 * The Twilio REST API as callvault uses it: the official `twilio` client, optionally pointed at another base
 * URL (a proxy or regional endpoint) through the client's documented `httpClient` hook, plus the recording
 * media download, which the client does not wrap. SignalWire's Compatibility (LaML) API has the same paths
 * under its Space URL (`https://{space}.signalwire.com/api/laml/2010-04-01/Accounts/{ProjectId}/…`), so the same
 * client drives it with `carrier: 'signalwire'` and that base.
 */
import twilio from 'twilio';

type RequestOptions<TData> = Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0] & { data?: TData };
import { UUID_PATTERN } from '../config/index.js';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';

export const TWILIO_API_ORIGIN = 'https://api.twilio.com';
const REQUEST_TIMEOUT_MS = 30_000;

export type TwilioRestClient = twilio.Twilio;

/** Sends every request to `baseUrl`, keeping the path and query the client built for api.twilio.com. */
class BaseUrlRequestClient extends twilio.RequestClient {
  readonly #base: URL;

  constructor(baseUrl: string) {
    super({ timeout: REQUEST_TIMEOUT_MS });
    this.#base = new URL(baseUrl);
  }

  override request<TData>(opts: RequestOptions<TData>) {
    const target = new URL(opts.uri);
    const rewritten = new URL(this.#base.href.replace(/\/$/, '') + target.pathname + target.search);
    return super.request<TData>({ ...opts, uri: rewritten.href });
  }
}

export interface TwilioRestOptions {
  /** What comes before `/2010-04-01/…`. Unset: Twilio's own API (required for SignalWire: Space URL + /api/laml). */
  baseUrl?: string | undefined;
  /** `signalwire`: the AccountSid is a project id and recording SIDs are UUIDs. Twilio's shapes when unset. */
  carrier?: 'twilio' | 'signalwire' | undefined;
}

/**
 * twilio-node refuses to be built with an AccountSid that does not start with AC. A SignalWire client is built
 * with this placeholder and then given the project id, which every path the client builds uses
 * (`/Accounts/{AccountSid}/…`); the credentials it sends stay project id and token.
 */
const PLACEHOLDER_ACCOUNT_SID = `AC${'0'.repeat(32)}`;

/** The credentials of one Twilio account: its AccountSid and AuthToken. */
export interface TwilioCredentials {
  accountSid: string;
  authToken: string;
}

export function createTwilioRestClient(account: TwilioCredentials, opts: TwilioRestOptions = {}): TwilioRestClient {
  if (opts.carrier === 'signalwire') {
    if (!opts.baseUrl) throw new CallvaultError(ErrorCode.ConfigInvalid, 'a SignalWire client needs its Space URL');
    if (!UUID_PATTERN.test(account.accountSid)) throw new CallvaultError(ErrorCode.ConfigInvalid, 'a SignalWire project id is a UUID');
    const client = twilio(account.accountSid, account.authToken, {
      accountSid: PLACEHOLDER_ACCOUNT_SID,
      httpClient: new BaseUrlRequestClient(opts.baseUrl),
      timeout: REQUEST_TIMEOUT_MS,
    });
    client.accountSid = account.accountSid;
    return client;
  }
  return twilio(account.accountSid, account.authToken, {
    ...(opts.baseUrl ? { httpClient: new BaseUrlRequestClient(opts.baseUrl) } : {}),
    timeout: REQUEST_TIMEOUT_MS,
  });
}

/** A Twilio REST failure as a CallvaultError: 404 stays NOT_FOUND, other refusals are the caller's request. */
export function twilioError(err: unknown, what: string): CallvaultError {
  if (isCallvaultError(err)) return err;
  const status = (err as { status?: unknown } | null)?.status;
  const twilioCode = (err as { code?: unknown } | null)?.code;
  const details = { twilioStatus: typeof status === 'number' ? status : null, twilioCode: typeof twilioCode === 'number' ? twilioCode : null };
  if (status === 404) return new CallvaultError(ErrorCode.NotFound, `Twilio does not know ${what}`, { cause: err, details });
  if (typeof status === 'number' && status >= 400 && status < 500 && status !== 429) {
    return new CallvaultError(ErrorCode.Conflict, `Twilio refused to ${what}`, { cause: err, details });
  }
  return new CallvaultError(ErrorCode.StorageUnavailable, `Twilio API failed to ${what}`, { cause: err, retryable: true, details });
}

/**
 * Downloads a recording's audio as WAV with the account's credentials. The URL is built from the configured
 * base and the SIDs, never taken from a callback's RecordingUrl, so a forged callback cannot make the
 * gateway fetch (and store) an arbitrary URL.
 */
export async function downloadRecordingWav(
  account: TwilioCredentials,
  recordingSid: string,
  opts: TwilioRestOptions & { signal?: AbortSignal } = {},
): Promise<Uint8Array> {
  const signalwire = opts.carrier === 'signalwire';
  if (!(signalwire ? UUID_PATTERN : /^RE[0-9a-fA-F]{32}$/).test(recordingSid)) {
    throw new CallvaultError(ErrorCode.BadRequest, signalwire ? 'not a SignalWire recording SID' : 'not a Twilio RecordingSid', { details: { recordingSid } });
  }
  if (signalwire && !opts.baseUrl) throw new CallvaultError(ErrorCode.ConfigInvalid, 'a SignalWire download needs its Space URL');
  const base = (opts.baseUrl ?? TWILIO_API_ORIGIN).replace(/\/$/, '');
  const url = `${base}/2010-04-01/Accounts/${account.accountSid}/Recordings/${recordingSid}.wav`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: `Basic ${Buffer.from(`${account.accountSid}:${account.authToken}`).toString('base64')}` },
      signal: opts.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS * 4),
    });
  } catch (cause) {
    throw new CallvaultError(ErrorCode.StorageUnavailable, 'could not reach Twilio to download the recording', { cause, retryable: true });
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw twilioError({ status: response.status }, `download recording ${recordingSid}`);
  }
  return new Uint8Array(await response.arrayBuffer());
}
