/**
 * The carriers whose Twilio-compatible REST API callvault drives (Twilio-side and SignalWire-side recordings):
 * one shape for a Twilio account and a SignalWire project, so the REST flow (start, stop, pause, status callback,
 * import, poller) is written once and differs only in the host, the account identifiers and the names it records.
 */
import type { GatewayOptions, SignalWireProject, TwilioAccount } from './options.js';

export type Carrier = 'twilio' | 'signalwire';

export interface CarrierAccount extends TwilioAccount {
  carrier: Carrier;
  /**
   * The REST API base: what comes before `/2010-04-01/Accounts/…`. Twilio: TWILIO_API_BASE_URL or unset (the
   * client's own https://api.twilio.com); SignalWire: the Space URL + `/api/laml`.
   */
  apiBaseUrl: string | undefined;
}

/** Where a SignalWire Space serves its Twilio-compatible (LaML) REST API. */
export const SIGNALWIRE_LAML_PREFIX = '/api/laml';

export function signalWireAccount(project: SignalWireProject): CarrierAccount {
  return {
    carrier: 'signalwire',
    org: project.org,
    accountSid: project.projectId,
    authToken: project.token,
    apiBaseUrl: `${project.spaceUrl.replace(/\/+$/, '')}${SIGNALWIRE_LAML_PREFIX}`,
  };
}

/** Every configured account of `carrier` (Twilio accounts, or SignalWire projects as accounts). */
export function carrierAccounts(options: Readonly<GatewayOptions>, carrier: Carrier): CarrierAccount[] {
  if (carrier === 'signalwire') return (options.signalwire?.projects ?? []).map(signalWireAccount);
  return options.twilio.accounts.map((a) => ({ ...a, carrier: 'twilio' as const, apiBaseUrl: options.twilio.apiBaseUrl }));
}

/** The organisation's account of `carrier` named by `accountSid`, else its first one of that carrier. */
export function carrierAccountOf(options: Readonly<GatewayOptions>, carrier: Carrier, orgId: string, accountSid: unknown): CarrierAccount | undefined {
  const accounts = carrierAccounts(options, carrier).filter((a) => a.org === orgId);
  return accounts.find((a) => a.accountSid === accountSid) ?? accounts[0];
}
