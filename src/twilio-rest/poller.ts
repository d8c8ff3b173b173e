/**
 * For deployments Twilio's status callbacks cannot reach: find completed Twilio recordings of recent calls that
 * have none here yet, and import them. Runs on a schedule (TWILIO_RECORDING_POLLING) or once on request.
 */
import { ErrorCode, type ErrorCode as ErrorCodeValue } from '../errors/index.js';
import { carrierAccountOf, carrierAccounts, type Carrier, type GatewayPort, type PolledCall, type PollScheduler, type TwilioImports } from '../gateway/port.js';
import { createTwilioRestClient, twilioError } from '../twilio-client/index.js';
import { importTwilioRecording } from './import.js';

/** The lease under which the schedule runs: on one gateway of the fleet at a time. */
export const POLLER_LEASE = 'twilio-poller';

/** Calls older than this are not looked at again: Twilio finishes a recording minutes after the call. */
export const POLL_LOOKBACK_MS = 24 * 60 * 60 * 1000;
/**
 * What a poll result says about a failure: a stable code and a fixed sentence per code, never the underlying
 * error's text (a resolver's `getaddrinfo ENOTFOUND api.example`, a socket error), which stays in the log.
 */
const POLL_ERROR_MESSAGES: Partial<Record<ErrorCodeValue, string>> = {
  [ErrorCode.NotFound]: 'Twilio does not know this call or its recordings',
  [ErrorCode.Conflict]: 'Twilio refused the request (check the account credentials and the CallSid)',
  [ErrorCode.StorageUnavailable]: 'the Twilio API or object storage is unreachable; the next run retries',
  [ErrorCode.DatabaseUnavailable]: 'the database is unreachable; the next run retries',
  [ErrorCode.BadRequest]: 'the Twilio recording could not be read',
};

export function pollError(err: unknown): NonNullable<PolledCall['error']> {
  const error = twilioError(err, 'list or fetch the call recordings');
  const twilioStatus = error.details?.['twilioStatus'];
  return {
    code: error.code,
    message: POLL_ERROR_MESSAGES[error.code] ?? 'the recording could not be imported',
    ...(typeof twilioStatus === 'number' ? { twilioStatus } : {}),
  };
}

/** Calls examined per organisation per run, newest first. */
export const POLL_CALL_LIMIT = 200;

/** One run for the organisation: its Twilio calls, then its SignalWire calls (the same REST flow, per carrier). */
export async function pollTwilioRecordings(gateway: GatewayPort, orgId: string): Promise<PolledCall[]> {
  const results: PolledCall[] = [];
  for (const carrier of ['twilio', 'signalwire'] as const) {
    if (!carrierAccounts(gateway.options, carrier).some((a) => a.org === orgId)) continue;
    results.push(...(await pollCarrier(gateway, orgId, carrier)));
  }
  return results;
}

async function pollCarrier(gateway: GatewayPort, orgId: string, carrier: Carrier): Promise<PolledCall[]> {
  const since = new Date(gateway.now() - POLL_LOOKBACK_MS);
  const candidates = await gateway.db.imports.pollCandidates(orgId, since, POLL_CALL_LIMIT, carrier);
  const results: PolledCall[] = [];
  for (const candidate of candidates) {
    const account = carrierAccountOf(gateway.options, carrier, orgId, candidate.accountSid);
    if (!account) continue;
    const polled: PolledCall = { callSid: candidate.callSid, outcome: 'no_recordings', recordings: [] };
    try {
      const client = createTwilioRestClient(account, { baseUrl: account.apiBaseUrl, carrier });
      const listed = await client.calls(candidate.callSid).recordings.list({ limit: 50 });
      for (const recording of listed.filter((r) => r.status === 'completed')) {
        const result = await importTwilioRecording(gateway, account, {
          recordingSid: recording.sid,
          callSid: candidate.callSid,
          startTime: recording.startTime ?? undefined,
          details: { status: recording.status, duration: recording.duration, channels: recording.channels, via: 'poller' },
        });
        if (result.outcome === 'stored') polled.recordings.push(result.recordingSid);
      }
      if (polled.recordings.length > 0) polled.outcome = 'uploaded';
    } catch (err) {
      polled.outcome = 'twilio_error';
      polled.error = pollError(err);
      gateway.options.logger.warn({ callSid: candidate.callSid, code: polled.error.code, err }, 'twilio recording poll failed for a call');
    }
    results.push(polled);
  }
  return results;
}

const defaultScheduler: PollScheduler = (task, intervalMs) => {
  const timer = setInterval(task, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
};

/**
 * Starts the periodic poll of every organisation with a Twilio account. A run never overlaps the previous
 * one, and runs only on the gateway holding the fleet's poller lease (one at a time across the fleet; it moves
 * when that gateway dies or shuts down); the schedule stops itself once the gateway is no longer running.
 */
export function startTwilioPoller(gateway: GatewayPort): () => void {
  const polling = gateway.options.twilio.recordingPolling;
  if (!polling?.enabled) return () => undefined;
  const orgs = [...new Set([...carrierAccounts(gateway.options, 'twilio'), ...carrierAccounts(gateway.options, 'signalwire')].map((a) => a.org))];
  let running = false;
  let stop: () => void = () => undefined;
  const lease = gateway.fleet.lease(POLLER_LEASE);
  const run = (): void => {
    if (gateway.state === 'draining' || gateway.state === 'closed') {
      stop();
      return;
    }
    if (running || gateway.state !== 'running' || !lease.held) return;
    running = true;
    gateway.options.logger.info({ lease: POLLER_LEASE, gatewayId: gateway.fleet.gatewayId }, 'twilio recording poll started');
    void (async () => {
      for (const org of orgs) {
        const results = await pollTwilioRecordings(gateway, org).catch((err: unknown) => {
          gateway.options.logger.error({ org, err }, 'twilio recording poll failed');
          return [];
        });
        const uploaded = results.filter((r) => r.outcome === 'uploaded').length;
        if (results.length > 0) gateway.options.logger.info({ org, calls: results.length, uploaded }, 'twilio recordings polled');
      }
    })().finally(() => {
      running = false;
    });
  };
  stop = (polling.scheduler ?? defaultScheduler)(run, polling.intervalMs);
  return stop;
}

/** The Twilio side as the API uses it: bootstrap hands this to the routes. */
export function twilioImports(gateway: GatewayPort): TwilioImports {
  return {
    importRecording: (account, ref) => importTwilioRecording(gateway, account, ref),
    poll: (orgId) => pollTwilioRecordings(gateway, orgId),
  };
}
