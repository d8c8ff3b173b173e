/**
 * `POST /webhooks/twilio-recording`: Twilio's RecordingStatusCallback. Authenticated by `X-Twilio-Signature`
 * (HMAC-SHA1 over the public URL and the form parameters, with the account's auth token); on `completed` the
 * recording is imported (downloaded, encrypted, stored, linked to its call). Answers 5xx when the import
 * fails so that Twilio retries; a retry or duplicate of a stored recording answers 200 and stores nothing.
 *
 * `POST /webhooks/signalwire-recording` is the same for SignalWire-side recordings: `X-SignalWire-Signature`
 * (the same scheme, keyed by the project's token; `X-Twilio-Signature` is taken when it is absent), the project id
 * as `AccountSid`, UUID recording and call SIDs, and the recording fetched from the project's Space.
 */
import { randomBytes } from 'node:crypto';
import twilio from 'twilio';
import { UUID_PATTERN } from '../../config/index.js';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import { carrierAccounts, type Carrier, type GatewayPort, type TwilioImports } from '../../gateway/port.js';
import { json, type HttpResult, type Router } from '../../http/http.js';
import { TWILIO_RECORDING_SID } from './common.js';

export const TWILIO_RECORDING_WEBHOOK_PATH = '/webhooks/twilio-recording';
export const SIGNALWIRE_RECORDING_WEBHOOK_PATH = '/webhooks/signalwire-recording';

/** Where each carrier's status callback arrives, how it is signed and what its recording SIDs look like. */
const CALLBACKS: Record<Carrier, { path: string; routeName: string; signatureHeaders: readonly string[]; recordingSid: RegExp }> = {
  twilio: {
    path: TWILIO_RECORDING_WEBHOOK_PATH,
    routeName: 'webhook_twilio_recording',
    signatureHeaders: ['x-twilio-signature'],
    recordingSid: TWILIO_RECORDING_SID,
  },
  signalwire: {
    path: SIGNALWIRE_RECORDING_WEBHOOK_PATH,
    routeName: 'webhook_signalwire_recording',
    signatureHeaders: ['x-signalwire-signature', 'x-twilio-signature'],
    recordingSid: UUID_PATTERN,
  },
};

/** The callback URL to give the carrier when callvault asks it to record. */
export function recordingCallbackUrl(publicUrl: string, carrier: Carrier): string {
  return `${publicUrl}${CALLBACKS[carrier].path}`;
}

/** Keys the HMAC computed for an unknown AccountSid, so both refusals take the same work. */
const UNKNOWN_ACCOUNT_TOKEN = randomBytes(16).toString('hex');

function signatureRefused(): HttpResult {
  // One answer for an unknown account and a bad signature: a caller learns nothing about which accounts exist.
  return json(403, { error: { code: ErrorCode.SignatureInvalid, message: 'the request signature does not match a configured account' } });
}

export function registerWebhookRoutes(router: Router, gateway: GatewayPort, twilioSide: TwilioImports): void {
  registerRecordingCallback(router, gateway, twilioSide, 'twilio');
  // Always mounted: with no SIGNALWIRE_PROJECTS every delivery is refused (403).
  registerRecordingCallback(router, gateway, twilioSide, 'signalwire');
}

function registerRecordingCallback(router: Router, gateway: GatewayPort, twilioSide: TwilioImports, carrier: Carrier): void {
  const { logger, twilio: twilioOptions } = gateway.options;
  const callback = CALLBACKS[carrier];
  const accounts = carrierAccounts(gateway.options, carrier);

  router.route('post', callback.path, callback.routeName, async (ctx) => {
    const raw = await ctx.readBody(64 * 1024);
    const form = new URLSearchParams(raw.toString('utf8'));
    const params: Record<string, string> = {};
    for (const [name, value] of form) params[name] = value;
    const known = accounts.find((a) => a.accountSid === params['AccountSid']);
    // An unknown AccountSid is answered exactly like a bad signature (same status, body and work: the HMAC is
    // computed either way), so a caller cannot learn which accounts are configured.
    if (twilioOptions.validateSignatures || !known) {
      // The carrier signs the exact URL it called: the raw query, not a re-encoded one.
      const url = `${gateway.publicUrl}${ctx.url}${ctx.rawQuery ? `?${ctx.rawQuery}` : ''}`;
      const signature = callback.signatureHeaders.map((h) => ctx.headers.get(h)).find((v) => v) ?? '';
      const valid = signature !== '' && twilio.validateRequest(known?.authToken ?? UNKNOWN_ACCOUNT_TOKEN, signature, url, params);
      if (!known || !signature || (twilioOptions.validateSignatures && !valid)) {
        logger.warn({ known: Boolean(known), carrier }, 'recording callback refused');
        return signatureRefused();
      }
    }
    if (!known) return signatureRefused();
    const account = known;
    const recordingSid = params['RecordingSid'] ?? '';
    const callSid = params['CallSid'] ?? '';
    const status = params['RecordingStatus'] ?? '';
    if (!callback.recordingSid.test(recordingSid)) throw new CallvaultError(ErrorCode.BadRequest, 'RecordingSid is missing or malformed');
    if (status !== 'completed') {
      // Nothing will come of an absent or failed recording: forget the options it was requested with.
      if (status === 'absent' || status === 'failed') await gateway.db.imports.deleteTwilioRequest(account.org, recordingSid);
      logger.info({ recordingSid, callSid, status, carrier }, 'recording status received');
      return json(200, { success: true, outcome: 'ignored', status });
    }
    const startTime = params['RecordingStartTime'] ? new Date(params['RecordingStartTime']) : undefined;
    const result = await twilioSide.importRecording(account, {
      recordingSid,
      callSid,
      startTime: startTime && !Number.isNaN(startTime.getTime()) ? startTime : undefined,
      details: {
        status,
        duration: params['RecordingDuration'] ?? null,
        channels: params['RecordingChannels'] ?? null,
        source: params['RecordingSource'] ?? null,
        track: params['RecordingTrack'] ?? null,
        via: 'status_callback',
      },
    });
    return json(200, { success: true, outcome: result.outcome, recordingSid: result.recordingSid });
  });
}
