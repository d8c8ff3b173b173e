import { z } from 'zod';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import { carrierAccountOf, carrierAccounts, type Carrier, type CarrierAccount, type GatewayPort, type TwilioAccount } from '../../gateway/port.js';
import type { RequestContext } from '../../http/http.js';

/** Reads and validates a JSON body; anything unreadable or off-schema is BAD_REQUEST with the issues. */
export async function jsonBody<T extends z.ZodType>(ctx: RequestContext, schema: T, limitBytes = 64 * 1024): Promise<z.infer<T>> {
  const raw = await ctx.readBody(limitBytes);
  let value: unknown = {};
  if (raw.length > 0) {
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch {
      // No cause: V8's parse error quotes the body around the fault, and a body may hold a client key.
      throw new CallvaultError(ErrorCode.BadRequest, 'request body is not JSON');
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new CallvaultError(ErrorCode.BadRequest, 'request body is invalid', {
      details: { issues: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`) },
    });
  }
  return parsed.data;
}

/** The organisation's Twilio account that placed the call (by its AccountSid), else its first one. */
export function twilioAccountOf(gateway: GatewayPort, orgId: string, accountSid: unknown): TwilioAccount {
  const accounts = gateway.options.twilio.accounts.filter((a) => a.org === orgId);
  const account = accounts.find((a) => a.accountSid === accountSid) ?? accounts[0];
  if (!account) throw new CallvaultError(ErrorCode.Conflict, 'the organisation has no Twilio account configured');
  return account;
}

/** The organisation's account of `carrier` that placed the call (by its AccountSid), else its first one of that carrier. */
export function carrierAccountFor(gateway: GatewayPort, carrier: Carrier, orgId: string, accountSid: unknown): CarrierAccount {
  const account = carrierAccountOf(gateway.options, carrier, orgId, accountSid);
  if (!account) {
    throw new CallvaultError(ErrorCode.Conflict, `the organisation has no ${carrier === 'signalwire' ? 'SignalWire project' : 'Twilio account'} configured`);
  }
  return account;
}

/** Which carrier an AccountSid (a Twilio AccountSid or a SignalWire project id) of the organisation belongs to. */
export function carrierOfAccount(gateway: GatewayPort, orgId: string, accountSid: string): Carrier {
  const signalwire = carrierAccounts(gateway.options, 'signalwire').some((a) => a.org === orgId && a.accountSid === accountSid);
  return signalwire ? 'signalwire' : 'twilio';
}

export const TWILIO_RECORDING_SID = /^RE[0-9a-fA-F]{32}$/;

/**
 * A status as the API spells it: hyphens, as the recording APIs callvault replaces spell theirs
 * (`in-progress`, `completed`, `failed`, `uploading`). Stored rows keep their own spelling.
 */
export function apiStatus(status: string): string {
  return status.replace(/_/g, '-');
}

/** A `?status=` filter value: the API spelling, or the stored one (`in_progress`, still accepted), as stored. */
export function storedStatusOf(value: string): string {
  return value.replace(/-/g, '_');
}

/** The audio format `/media` serves once decrypted: `mp3` for recordings kept as MP3 (ElevenLabs), else `wav`. */
export function servedFormat(row: { format: string }): 'wav' | 'mp3' {
  return row.format === 'mp3' ? 'mp3' : 'wav';
}

/** The encrypted object's container format (`docs/recording-format.md`): one for every recording. */
export const CONTAINER_FORMAT = 'cvr1';
