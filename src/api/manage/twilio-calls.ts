/**
 * Twilio REST start-recording as teams already call it: `POST /twilio/start-recording` asks Twilio to record any
 * live call of the organisation's Twilio account (`calls(sid).recordings.create`), and `GET
 * /twilio/call-status/{callSid}` answers the call's status and its recordings (Twilio's, and those stored here).
 * Bodies and answers are snake_case, as the Twilio-style flows users come from send and read them.
 */
import { z } from 'zod';
import { CallvaultError, ErrorCode } from '../../errors/index.js';
import type { Carrier, CarrierAccount, GatewayPort } from '../../gateway/port.js';
import { sealClientKey, twilioRequestKeyContext } from '../../gateway/port.js';
import { createTwilioRestClient, twilioError, type TwilioRestClient } from '../../twilio-client/index.js';
import { authenticate, canSeeCall, type Principal } from '../../http/auth.js';
import { json, type RequestContext, type Router } from '../../http/http.js';
import { carrierAccountFor } from './common.js';
import type { ControlRateLimiter } from './rate-limit.js';
import { recordingCallbackUrl } from './webhooks.js';

export const TWILIO_START_RECORDING_PATH = '/twilio/start-recording';
export const TWILIO_CALL_STATUS_PATH = '/twilio/call-status';

/** Call SIDs as Twilio-compatible APIs issue them; anything else never reaches a URL path. */
const CALL_SID_SHAPE = /^[A-Za-z0-9-]{2,64}$/;

export const TwilioStartRecordingBody = z.object({
  call_sid: z.string().regex(CALL_SID_SHAPE, 'a Twilio CallSid (CA…)'),
  recording_status_callback: z.url({ protocol: /^https?$/ }).max(2048).optional(),
  recording_channels: z.enum(['dual', 'mono']).default('dual'),
  recording_track: z.enum(['inbound', 'outbound', 'both']).default('both'),
});

export const TwilioStartRecordingAnswer = z.object({
  success: z.literal(true),
  recording_sid: z.string(),
  call_sid: z.string(),
  status: z.string().describe("Twilio's recording status, normally `in-progress`."),
  channels: z.enum(['dual', 'mono']),
  recording_status_callback: z.string().describe('Where Twilio reports the recording: the given callback, else this gateway’s own webhook.'),
});

const TwilioRecordingSummary = z.object({
  recording_sid: z.string(),
  status: z.string(),
  channels: z.number().int().nullable(),
  duration: z.number().int().nullable().describe('Seconds; null while in progress.'),
  source: z.string().nullable(),
  start_time: z.string().nullable(),
});

export const TwilioCallStatusAnswer = z.object({
  success: z.literal(true),
  call_sid: z.string(),
  status: z.string().describe("Twilio's call status: queued, ringing, in-progress, completed, busy, failed, no-answer, canceled."),
  direction: z.string().nullable(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  start_time: z.string().nullable(),
  end_time: z.string().nullable(),
  duration: z.number().int().nullable(),
  recordings: z.array(TwilioRecordingSummary).describe("The call's recordings at Twilio."),
  stored_recordings: z
    .array(z.object({ recording_sid: z.string(), status: z.string(), source: z.string(), duration_ms: z.number().int().nullable() }))
    .describe('Recordings of this call stored by callvault.'),
});

export interface TwilioStartParams {
  /** Whose REST API records it: Twilio's, or the SignalWire project's Space (the same flow). Default Twilio. */
  carrier?: Carrier;
  callSid: string;
  statusCallback?: string | undefined;
  channels: 'dual' | 'mono';
  track: 'inbound' | 'outbound' | 'both';
  stereo?: boolean | undefined;
  key?: string | undefined;
}

export interface TwilioStarted {
  recordingSid: string;
  callSid: string;
  status: string;
  channels: 'dual' | 'mono';
  statusCallback: string;
  accountSid: string;
}

/** Twilio's own message for a resource it does not know (it names the path), else a stable one. */
function twilioNotFound(err: unknown, fallback: string): CallvaultError {
  const mapped = twilioError(err, fallback);
  if (mapped.code !== ErrorCode.NotFound) return mapped;
  const message = (err as { message?: unknown } | null)?.message;
  const safe = typeof message === 'string' && message.length <= 300 && /^[\x20-\x7e]+$/.test(message) ? message : mapped.message;
  return new CallvaultError(ErrorCode.NotFound, safe, { cause: err, ...(mapped.details ? { details: mapped.details } : {}) });
}

const TWILIO_CALL_SID = /^CA[0-9a-fA-F]{32}$/;

const LIVE_CALL_STATUSES = new Set(['queued', 'ringing', 'in-progress']);

/** The organisation's known row of this call (for its account and its user tag), if the gateway has one. */
async function knownCall(gateway: GatewayPort, orgId: string, callSid: string, carrier: Carrier) {
  return gateway.db.calls.getByExternalId(orgId, callSid, carrier);
}

/** A user-bound key reaches only calls tagged with its user; anything else answers like an unknown call. */
async function accountFor(gateway: GatewayPort, principal: Principal, callSid: string, carrier: Carrier = 'twilio'): Promise<CarrierAccount> {
  const row = await knownCall(gateway, principal.orgId, callSid, carrier);
  if (!canSeeCall(principal, row?.metadata)) throw new CallvaultError(ErrorCode.NotFound, 'no such call');
  return carrierAccountFor(gateway, carrier, principal.orgId, row?.metadata['accountSid']);
}

function client(account: CarrierAccount, carrier: Carrier = 'twilio'): TwilioRestClient {
  return createTwilioRestClient(account, { baseUrl: account.apiBaseUrl, carrier });
}

/**
 * Asks Twilio to record a live call from now on. The call must be live at Twilio (404 with Twilio's message
 * when it does not know it, 409 when it has ended or Twilio is already recording it). The status callback is the
 * caller's, else this gateway's webhook, which imports the recording when it completes.
 */
export async function startTwilioRecording(gateway: GatewayPort, principal: Principal, params: TwilioStartParams): Promise<TwilioStarted> {
  const { orgId } = principal;
  const carrier = params.carrier ?? 'twilio';
  // A UUID-style id is a SignalWire call: Twilio cannot know it, and is not asked.
  if (carrier === 'twilio' && !TWILIO_CALL_SID.test(params.callSid)) throw new CallvaultError(ErrorCode.NotFound, 'Twilio does not know this call');
  const account = await accountFor(gateway, principal, params.callSid, carrier);
  const call = client(account, carrier).calls(params.callSid);
  const fetched = await call.fetch().catch((err: unknown) => {
    throw twilioNotFound(err, 'this call');
  });
  if (!LIVE_CALL_STATUSES.has(fetched.status)) {
    throw new CallvaultError(ErrorCode.Conflict, 'the call is not in progress', { details: { twilioCallStatus: fetched.status } });
  }
  const existing = await call.recordings.list({ limit: 50 }).catch((err: unknown) => {
    throw twilioNotFound(err, "this call's recordings");
  });
  const active = existing.find((r) => r.status === 'in-progress' || r.status === 'paused');
  if (active) {
    throw new CallvaultError(ErrorCode.Conflict, 'Twilio is already recording this call', { details: { twilioRecordingSid: active.sid } });
  }
  const statusCallback = params.statusCallback ?? recordingCallbackUrl(gateway.publicUrl, carrier);
  const created = await call.recordings
    .create({
      recordingChannels: params.channels,
      recordingTrack: params.track,
      recordingStatusCallback: statusCallback,
      recordingStatusCallbackMethod: 'POST',
      recordingStatusCallbackEvent: ['in-progress', 'completed', 'absent'],
    })
    .catch((err: unknown) => {
      throw twilioNotFound(err, 'this call');
    });
  const sealed = params.key === undefined ? null : sealClientKey(gateway.options.keyring, twilioRequestKeyContext(orgId, created.sid), params.key);
  await gateway.db.imports.saveTwilioRequest({
    orgId,
    twilioRecordingSid: created.sid,
    callSid: params.callSid,
    accountSid: account.accountSid,
    stereo: params.stereo ?? (params.channels === 'mono' ? false : null),
    keyId: sealed?.keyId ?? null,
    sealedKey: sealed ? Buffer.from(sealed.sealed) : null,
  });
  gateway.options.logger.info({ orgId, callSid: params.callSid, twilioRecordingSid: created.sid, channels: params.channels }, 'twilio recording started');
  return { recordingSid: created.sid, callSid: params.callSid, status: created.status, channels: params.channels, statusCallback, accountSid: account.accountSid };
}

/** `{}` or a body without `call_sid` names the field in the message, as the flows users come from expect. */
async function startBody(ctx: RequestContext): Promise<z.infer<typeof TwilioStartRecordingBody>> {
  const raw = await ctx.readBody(64 * 1024);
  let value: unknown = {};
  if (raw.length > 0) {
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch (cause) {
      throw new CallvaultError(ErrorCode.BadRequest, 'request body is not JSON', { cause });
    }
  }
  const parsed = TwilioStartRecordingBody.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
  const missingCallSid = typeof value !== 'object' || value === null || !('call_sid' in value);
  const field = parsed.error.issues[0]?.path.join('.') || 'body';
  throw new CallvaultError(ErrorCode.BadRequest, missingCallSid ? 'missing call_sid' : `invalid ${field}`, { details: { issues } });
}

function iso(date: Date | null | undefined): string | null {
  return date instanceof Date && !Number.isNaN(date.getTime()) ? date.toISOString() : null;
}

function intOrNull(value: unknown): number | null {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value !== '' ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 0 ? n : null;
}

export function registerTwilioCallRoutes(router: Router, gateway: GatewayPort, limiter: ControlRateLimiter): void {
  const { db } = gateway;

  router.route('post', TWILIO_START_RECORDING_PATH, 'twilio_start_recording', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const body = await startBody(ctx);
    limiter.take(principal.orgId, body.call_sid);
    const started = await startTwilioRecording(gateway, principal, {
      callSid: body.call_sid,
      statusCallback: body.recording_status_callback,
      channels: body.recording_channels,
      track: body.recording_track,
    });
    return json(200, {
      success: true,
      recording_sid: started.recordingSid,
      call_sid: started.callSid,
      status: started.status,
      channels: started.channels,
      recording_status_callback: started.statusCallback,
    } satisfies z.infer<typeof TwilioStartRecordingAnswer>);
  });

  router.route('get', `${TWILIO_CALL_STATUS_PATH}/:callSid`, 'twilio_call_status', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const callSid = ctx.params[0] ?? '';
    if (!CALL_SID_SHAPE.test(callSid)) throw new CallvaultError(ErrorCode.BadRequest, 'not a Twilio CallSid', { details: { callSid: callSid.slice(0, 64) } });
    const account = await accountFor(gateway, principal, callSid);
    const call = client(account).calls(callSid);
    const fetched = await call.fetch().catch((err: unknown) => {
      throw twilioNotFound(err, 'this call');
    });
    const listed = await call.recordings.list({ limit: 50 }).catch((err: unknown) => {
      throw twilioNotFound(err, "this call's recordings");
    });
    const stored = await db.recordings.list(principal.orgId, { callSid, page: 0, limit: 100 });
    return json(200, {
      success: true,
      call_sid: fetched.sid,
      status: fetched.status,
      direction: fetched.direction ?? null,
      from: fetched.from ?? null,
      to: fetched.to ?? null,
      start_time: iso(fetched.startTime),
      end_time: iso(fetched.endTime),
      duration: intOrNull(fetched.duration),
      recordings: listed.map((r) => ({
        recording_sid: r.sid,
        status: r.status,
        channels: intOrNull(r.channels),
        duration: r.status === 'completed' ? intOrNull(r.duration) : null,
        source: r.source ?? null,
        start_time: iso(r.startTime),
      })),
      stored_recordings: stored.rows.map((r) => ({ recording_sid: r.recordingSid, status: r.status, source: r.source, duration_ms: r.durationMs })),
    } satisfies z.infer<typeof TwilioCallStatusAnswer>);
  });
}
