/**
 * `POST /webhooks/twilio-recording`: Twilio's RecordingStatusCallback. Authenticated by `X-Twilio-Signature`
 * (HMAC-SHA1 over the public URL and the form parameters, with the account's auth token); on `completed` the
 * recording is imported (downloaded, encrypted, stored, linked to its call). Answers 5xx when the import
 * fails so that Twilio retries; a retry or duplicate of a stored recording answers 200 and stores nothing.
 */
import { randomBytes } from 'node:crypto';
import twilio from 'twilio';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import type { GatewayPort, TwilioImports } from '../../gateway/port.js';
import { json, type HttpResult, type Router } from '../../http/http.js';
import { TWILIO_RECORDING_SID } from './common.js';

export const TWILIO_RECORDING_WEBHOOK_PATH = '/webhooks/twilio-recording';

/** The one refusal for a bad signature and for an AccountSid that is not configured. */
const SIGNATURE_REFUSED_MESSAGE = 'X-Twilio-Signature does not match';
/** Keys the HMAC computed for an unknown AccountSid, so both refusals take the same work. */
const UNKNOWN_ACCOUNT_TOKEN = randomBytes(16).toString('hex');

function signatureRefused(message: string): HttpResult {
  return json(403, { error: { code: ErrorCode.SignatureInvalid, message } });
}

export function registerWebhookRoutes(router: Router, gateway: GatewayPort, twilioSide: TwilioImports): void {
  const { logger, twilio: twilioOptions } = gateway.options;

  router.route('post', TWILIO_RECORDING_WEBHOOK_PATH, 'webhook_twilio_recording', async (ctx) => {
    const raw = await ctx.readBody(64 * 1024);
    const form = new URLSearchParams(raw.toString('utf8'));
    const params: Record<string, string> = {};
    for (const [name, value] of form) params[name] = value;
    const known = twilioOptions.accounts.find((a) => a.accountSid === params['AccountSid']);
    // An unknown AccountSid is answered exactly like a bad signature (same status, body and work: the HMAC is
    // computed either way), so a caller cannot learn which accounts are configured.
    const account = known ?? { org: '', accountSid: '', authToken: UNKNOWN_ACCOUNT_TOKEN };
    if (twilioOptions.validateSignatures || !known) {
      // Twilio signs the exact URL it called: the raw query, not a re-encoded one.
      const url = `${gateway.publicUrl}${ctx.url}${ctx.rawQuery ? `?${ctx.rawQuery}` : ''}`;
      const signature = ctx.headers.get('x-twilio-signature') ?? '';
      const valid = signature !== '' && twilio.validateRequest(account.authToken, signature, url, params);
      if (!known || !signature || (twilioOptions.validateSignatures && !valid)) {
        logger.warn({ known: Boolean(known) }, 'twilio recording callback refused');
        return signatureRefused(SIGNATURE_REFUSED_MESSAGE);
      }
    }
    const recordingSid = params['RecordingSid'] ?? '';
    const callSid = params['CallSid'] ?? '';
    const status = params['RecordingStatus'] ?? '';
    if (!TWILIO_RECORDING_SID.test(recordingSid)) throw new CallvaultError(ErrorCode.BadRequest, 'RecordingSid is missing or malformed');
    if (status !== 'completed') {
      // Nothing will come of an absent or failed recording: forget the options it was requested with.
      if (status === 'absent' || status === 'failed') await gateway.db.imports.deleteTwilioRequest(account.org, recordingSid);
      logger.info({ recordingSid, callSid, status }, 'twilio recording status received');
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
