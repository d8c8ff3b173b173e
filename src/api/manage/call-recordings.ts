/**
 * `/api/call-recordings`: list, inspect, serve and delete recordings, and control them mid-call (start, stop,
 * pause, resume), for recordings made by this gateway and for those Twilio makes on the gateway's request.
 */
import { z } from 'zod';
import { CallvaultError, ErrorCode, isCallvaultError } from '../../errors/index.js';
import { assertClientKeyStrong } from '../../crypto/index.js';
import type { CallSummary, Recording as RecordingRow, RecordingSource, RecordingStatus } from '../../db/index.js';
import type { GatewayPort, PauseRecord, TwilioImports } from '../../gateway/port.js';
import { createTwilioRestClient, twilioError } from '../../twilio-client/index.js';
import { authenticate, canSeeCall, requireOrganisationKey, type Principal } from '../../http/auth.js';
import { json, type HttpResult, type RequestContext, type Router, type StreamedResult } from '../../http/http.js';
import { UUID_PATTERN } from '../../config/index.js';
import { apiStatus, carrierAccountFor, carrierOfAccount, CONTAINER_FORMAT, jsonBody, servedFormat, storedStatusOf, TWILIO_RECORDING_SID } from './common.js';
import { agentRecordingOptions, layerRecordingOptions } from '../../gateway/port.js';
import type { ControlRateLimiter } from './rate-limit.js';
import { startTwilioRecording } from './twilio-calls.js';
import { forwardToOwner } from '../forward.js';

/** The gateway a request about this recording is handed to when it is not live here: its owner, while it records. */
/**
 * A recording's row says in progress a moment before the call on this gateway holds it (the row is written
 * first, then its spool and journal are opened): a control request in that moment waits for it, briefly.
 */
const STARTING_GRACE_MS = 2000;
const STARTING_POLL_MS = 25;

function liveOwnerOf(row: RecordingRow): string | null {
  return row.status === 'in_progress' || row.status === 'interrupted' ? row.ownerGateway : null;
}

export const CALL_RECORDINGS_PATH = '/api/call-recordings';
export const DEFAULT_LIST_LIMIT = 20;
export const MAX_LIST_LIMIT = 100;

const STATUSES: readonly RecordingStatus[] = ['in_progress', 'uploading', 'interrupted', 'completed', 'failed'];
const SOURCES: readonly RecordingSource[] = ['gateway', 'livekit', 'twilio', 'signalwire', 'elevenlabs'];

/** Serves a recording row's media (WAV with Range for server keys, a presigned redirect for client keys). */
export type RecordingMediaServer = (ctx: RequestContext, row: RecordingRow) => Promise<HttpResult | StreamedResult>;
/** Stops a live recording if any, then removes its object, spool and metadata. */
export type RecordingRemover = (orgId: string, row: RecordingRow) => Promise<void>;

function badRequest(message: string, details?: Record<string, unknown>): CallvaultError {
  return new CallvaultError(ErrorCode.BadRequest, message, details ? { details } : {});
}

function notFound(message = 'no such recording'): CallvaultError {
  // Deliberately the same for another organisation's recording.
  return new CallvaultError(ErrorCode.NotFound, message);
}

function isoOrNull(date: Date | null): string | null {
  return date ? date.toISOString() : null;
}

export function recordingView(row: RecordingRow, call: CallSummary | undefined, publicUrl: string): Record<string, unknown> {
  return {
    id: row.id,
    recordingSid: row.recordingSid,
    callSid: call?.externalId ?? null,
    status: apiStatus(row.status),
    // Whole seconds, as the recording APIs callvault replaces count them; durationMs is exact.
    duration: row.durationMs === null ? null : Math.round(row.durationMs / 1000),
    durationMs: row.durationMs,
    url: `${publicUrl}${CALL_RECORDINGS_PATH}/${row.recordingSid}/media`,
    mediaType: 'audio',
    contentType: servedFormat(row) === 'mp3' ? 'audio/mpeg' : 'audio/wav',
    source: row.source,
    channels: row.channels,
    format: servedFormat(row),
    container: CONTAINER_FORMAT,
    sampleRate: row.sampleRate,
    size: row.sizeBytes,
    keyMode: row.keyMode,
    errorCode: row.errorCode,
    // The gateway (GATEWAY_ID) whose spool holds the recording; control requests are handed to it.
    ownerGateway: row.ownerGateway,
    startTime: row.startedAt.toISOString(),
    endTime: isoOrNull(row.endedAt),
    metadata: row.metadata,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

function callView(call: CallSummary | undefined): Record<string, unknown> | null {
  if (!call) return null;
  return {
    id: call.id,
    callSid: call.externalId,
    source: call.source,
    status: call.status,
    startTime: call.startedAt.toISOString(),
    endTime: isoOrNull(call.endedAt),
  };
}

function positiveInt(value: string | null, name: string, fallback: number, max?: number): number {
  if (value === null || value === '') return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || (max !== undefined && n > max)) {
    throw badRequest(`${name} is an integer from 1${max === undefined ? '' : ` to ${max}`}`, { [name]: value });
  }
  return n;
}

function dateParam(value: string | null, name: string): Date | undefined {
  if (value === null || value === '') return undefined;
  // ISO 8601 only: Date.parse alone would also take locale-dependent free text.
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
    throw badRequest(`${name} is not an ISO 8601 date`, { [name]: value });
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw badRequest(`${name} is not a valid date`, { [name]: value });
  // Date rolls impossible days over (2026-02-30 becomes March 2): the calendar date must exist as written.
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  if (calendar.getUTCFullYear() !== year || calendar.getUTCMonth() !== month - 1 || calendar.getUTCDate() !== day) {
    throw badRequest(`${name} is not a valid date`, { [name]: value });
  }
  const time = /[T ](\d{2}):(\d{2})(?::(\d{2}))?/.exec(value);
  if (time && (Number(time[1]) > 23 || Number(time[2]) > 59 || Number(time[3] ?? 0) > 59)) {
    throw badRequest(`${name} is not a valid date`, { [name]: value });
  }
  return date;
}

function oneOf<T extends string>(value: string | null, name: string, allowed: readonly T[]): T | undefined {
  if (value === null || value === '') return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw badRequest(`unknown ${name}`, { [name]: value, allowed });
  return value as T;
}

/** `?status=`: the API spelling (`in-progress`, …); the stored `in_progress` is still accepted. */
function statusFilter(value: string | null): RecordingStatus | undefined {
  if (value === null || value === '') return undefined;
  const stored = storedStatusOf(value);
  if (!(STATUSES as readonly string[]).includes(stored) || (value.includes('-') && value.includes('_'))) {
    throw badRequest('unknown status', { status: value, allowed: STATUSES.map(apiStatus) });
  }
  return stored as RecordingStatus;
}

export const StartSchema = z
  .object({
    callSid: z.string().min(1).max(200),
    recordingTrack: z.enum(['inbound', 'outbound', 'both']).default('both'),
    stereo: z.boolean().optional(),
    key: z.string().min(1).optional(),
    source: z.enum(['gateway', 'twilio', 'signalwire']).default('gateway'),
    /** `source: twilio|signalwire` only: where the carrier reports the recording (default: this gateway's webhook). */
    recordingStatusCallback: z.url({ protocol: /^https?$/ }).max(2048).optional(),
    /** `source: twilio|signalwire` only: the carrier's `RecordingChannels` (default `dual`). */
    recordingChannels: z.enum(['dual', 'mono']).optional(),
  })
  .strict();

/** `PATCH /api/call-recordings/{id}`: tags and a consent record, kept in the recording's metadata. */
export const PatchRecordingSchema = z
  .object({
    tags: z.array(z.string().min(1).max(100).regex(/^[^\u0000-\u001f]+$/, 'printable text')).max(50).optional(),
    consent: z
      .object({
        given: z.boolean(),
        at: z.iso.datetime({ offset: true }),
        by: z.string().min(1).max(200),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((b) => b.tags !== undefined || b.consent !== undefined, 'give tags, consent or both');

const StopSchema = z
  .object({ recordingSid: z.string().min(1).max(200).optional(), callSid: z.string().min(1).max(200).optional() })
  .strict()
  .refine((b) => (b.recordingSid === undefined) !== (b.callSid === undefined), 'give exactly one of recordingSid or callSid');

const PauseSchema = z.object({ behavior: z.enum(['skip', 'silence']).default('silence') }).strict();

export interface CallRecordingRoutesDeps {
  serveMedia: RecordingMediaServer;
  remove: RecordingRemover;
  twilio: TwilioImports;
  limiter: ControlRateLimiter;
}

export function registerCallRecordingRoutes(router: Router, gateway: GatewayPort, deps: CallRecordingRoutesDeps): void {
  const { db } = gateway;

  /** The live call holding the recording here, waiting out the moment between its row and its start (above). */
  const liveCallOf = async (orgId: string, row: RecordingRow) => {
    let call = gateway.liveRecordingCall(orgId, row.id);
    const startingHere = row.status === 'in_progress' && (row.ownerGateway === null || row.ownerGateway === gateway.fleet.gatewayId);
    for (let waited = 0; !call && startingHere && waited < STARTING_GRACE_MS && !gateway.signal.aborted; waited += STARTING_POLL_MS) {
      await new Promise((resolve) => setTimeout(resolve, STARTING_POLL_MS));
      call = gateway.liveRecordingCall(orgId, row.id);
    }
    return call;
  };

  /** The REST client of the account (Twilio, or a SignalWire project's Space) that a recording was requested on. */
  const twilioClient = (orgId: string, accountSid: string) => {
    const carrier = carrierOfAccount(gateway, orgId, accountSid);
    const account = carrierAccountFor(gateway, carrier, orgId, accountSid);
    return { carrier, client: createTwilioRestClient(account, { baseUrl: account.apiBaseUrl, carrier }) };
  };

  /** A SignalWire recording SID is a UUID like callvault's own recording ids: it is one if it was requested here. */
  const carrierSideRequest = async (orgId: string, id: string) => {
    if (TWILIO_RECORDING_SID.test(id)) return twilioRequestOf(orgId, id);
    if (UUID_PATTERN.test(id)) return db.imports.twilioRequest(orgId, id);
    return null;
  };

  /** A user-bound key sees a recording only through a call tagged with its user; otherwise it is not there. */
  const visible = async (principal: Principal, row: RecordingRow): Promise<CallSummary | undefined> => {
    const calls = await db.imports.callsByIds(principal.orgId, row.callId ? [row.callId] : []);
    const call = row.callId ? calls.get(row.callId) : undefined;
    if (!canSeeCall(principal, call?.metadata)) throw notFound();
    return call;
  };

  router.route('get', CALL_RECORDINGS_PATH, 'call_recordings_list', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { orgId } = principal;
    const q = ctx.query;
    const page = positiveInt(q.get('page'), 'page', 1);
    const limit = positiveInt(q.get('limit'), 'limit', DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT);
    const callSid = q.get('callSid') || undefined;
    const status = statusFilter(q.get('status'));
    const source = oneOf(q.get('source'), 'source', SOURCES);
    const fromDate = dateParam(q.get('fromDate'), 'fromDate');
    const toDate = dateParam(q.get('toDate'), 'toDate');
    // The repository pages from 0; the API, like most back offices, from 1.
    const { total, rows } = await db.recordings.list(orgId, {
      page: page - 1,
      limit,
      ...(principal.userId === null ? {} : { userId: principal.userId }),
      ...(callSid ? { callSid } : {}),
      ...(status ? { status } : {}),
      ...(source ? { source } : {}),
      ...(fromDate ? { fromDate } : {}),
      ...(toDate ? { toDate } : {}),
    });
    const calls = await db.imports.callsByIds(orgId, rows.flatMap((r) => (r.callId ? [r.callId] : [])));
    return json(200, {
      success: true,
      count: rows.length,
      total,
      page,
      pages: Math.ceil(total / limit),
      recordings: rows.map((r) => recordingView(r, r.callId ? calls.get(r.callId) : undefined, gateway.publicUrl)),
    });
  });

  const rowOf = async (orgId: string, id: string): Promise<RecordingRow> => {
    const row = await db.recordings.get(orgId, id);
    if (!row) throw notFound();
    return row;
  };

  router.route('get', `${CALL_RECORDINGS_PATH}/:id`, 'call_recordings_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const row = await rowOf(principal.orgId, ctx.params[0] ?? '');
    const call = await visible(principal, row);
    return json(200, { success: true, recording: { ...recordingView(row, call, gateway.publicUrl), call: callView(call) } });
  });

  router.route('get', `${CALL_RECORDINGS_PATH}/:id/media`, 'call_recordings_media', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const row = await rowOf(principal.orgId, ctx.params[0] ?? '');
    await visible(principal, row);
    if (row.status !== 'completed' && row.status !== 'uploading') {
      throw new CallvaultError(ErrorCode.Conflict, `the recording is ${row.status.replace('_', ' ')}`, { details: { status: apiStatus(row.status) } });
    }
    return deps.serveMedia(ctx, row);
  });

  router.route('del', `${CALL_RECORDINGS_PATH}/:id`, 'call_recordings_delete', async (ctx) => {
    const principal = await authenticate(ctx, db, 'delete');
    const row = await rowOf(principal.orgId, ctx.params[0] ?? '');
    await visible(principal, row);
    // Recording on a peer: that gateway stops it and removes it (an interrupted one is deleted here: its owner is gone).
    if (row.status === 'in_progress' && !gateway.findLiveRecording(principal.orgId, row.id)) {
      const handed = await forwardToOwner(ctx, gateway, row.ownerGateway);
      if (handed) return handed;
    }
    await deps.remove(principal.orgId, row);
    gateway.options.logger.info({ recordingSid: row.recordingSid }, 'recording deleted');
    return { status: 204, headers: {}, body: '' };
  });

  router.route('patch', `${CALL_RECORDINGS_PATH}/:id`, 'call_recordings_patch', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const body = await jsonBody(ctx, PatchRecordingSchema);
    const row = await rowOf(principal.orgId, ctx.params[0] ?? '');
    const call = await visible(principal, row);
    const patch: Record<string, unknown> = {};
    if (body.tags !== undefined) patch['tags'] = [...new Set(body.tags)];
    if (body.consent !== undefined) {
      // Normalised to UTC so listings compare and sort as text.
      patch['consent'] = { given: body.consent.given, at: new Date(body.consent.at).toISOString(), by: body.consent.by };
    }
    await db.recordings.mergeMetadata(row.id, patch);
    const updated = await rowOf(principal.orgId, row.id);
    gateway.options.logger.info({ recordingSid: row.recordingSid, fields: Object.keys(patch) }, 'recording metadata updated');
    return json(200, { success: true, recording: { ...recordingView(updated, call, gateway.publicUrl), call: callView(call) } });
  });

  // ---- control mid-call -------------------------------------------------------------------------------

  router.route('post', `${CALL_RECORDINGS_PATH}/start`, 'call_recordings_start', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const body = await jsonBody(ctx, StartSchema);
    if (body.key !== undefined) assertClientKeyStrong(body.key);
    if (body.source === 'gateway' && (body.recordingStatusCallback !== undefined || body.recordingChannels !== undefined)) {
      throw badRequest('recordingStatusCallback and recordingChannels apply to source: twilio or signalwire only');
    }
    if (body.source === 'gateway' && !gateway.liveCall(principal.orgId, body.callSid)) {
      // The call's stream is on a peer: that gateway starts the recording.
      const known = await db.calls.getByExternalId(principal.orgId, body.callSid);
      if (known?.status === 'active' && canSeeCall(principal, known.metadata)) {
        const handed = await forwardToOwner(ctx, gateway, known.ownerGateway);
        if (handed) return handed;
      }
    }
    deps.limiter.take(principal.orgId, body.callSid);
    return body.source === 'gateway' ? startOnGateway(principal, body) : startTwilioSide(principal, body, body.source);
  });

  /** The live call, if the key may see it (a user-bound key only its user's calls). */
  const liveCallFor = async (principal: Principal, callSid: string) => {
    const call = gateway.liveCall(principal.orgId, callSid);
    if (!call) return undefined;
    if (principal.userId !== null) {
      const row = await db.calls.get(principal.orgId, call.dbId);
      if (!canSeeCall(principal, row?.metadata)) return undefined;
    }
    return call;
  };

  const startOnGateway = async (principal: Principal, body: z.infer<typeof StartSchema>): Promise<HttpResult> => {
    const { orgId } = principal;
    const call = await liveCallFor(principal, body.callSid);
    if (!call) throw notFound('no active call with this callSid');
    let tracks: string[] | undefined;
    if (body.recordingTrack !== 'both') {
      if (call.source === 'livekit') throw badRequest('recordingTrack inbound/outbound applies to Twilio and SignalWire calls only');
      tracks = [body.recordingTrack];
    }
    const callRow = await db.calls.get(orgId, call.dbId);
    const agentId = typeof callRow?.metadata['agentId'] === 'string' ? callRow.metadata['agentId'] : undefined;
    const agent = await agentRecordingOptions(db, gateway.options.keyring, orgId, agentId);
    const options = layerRecordingOptions(gateway.options.recording.defaults, agent, {
      enabled: true,
      ...(body.stereo === undefined ? {} : { stereo: body.stereo }),
      ...(body.key === undefined ? {} : { key: body.key }),
    });
    const recording = await call.startRecording(
      { ...options, enabled: true },
      {
        startedBy: 'api',
        recordingTrack: body.recordingTrack,
        recordingOptions: { enabled: true, stereo: options.stereo === true, keyMode: options.key ? 'client' : 'server' },
        ...(agentId ? { agentId } : {}),
      },
      tracks ? { tracks } : {},
    );
    return json(201, {
      success: true,
      recording: {
        id: recording.id,
        recordingSid: recording.recordingSid,
        callSid: body.callSid,
        source: call.source === 'livekit' ? 'livekit' : 'gateway',
        status: 'in-progress',
        recordingTrack: body.recordingTrack,
        keyMode: recording.keyMode,
        channels: recording.channels,
      },
    });
  };

  /** Asks the carrier (Twilio, or the SignalWire project's Space) to record the call; its callback imports it. */
  const startTwilioSide = async (principal: Principal, body: z.infer<typeof StartSchema>, carrier: 'twilio' | 'signalwire'): Promise<HttpResult> => {
    const started = await startTwilioRecording(gateway, principal, {
      carrier,
      callSid: body.callSid,
      statusCallback: body.recordingStatusCallback,
      channels: body.recordingChannels ?? 'dual',
      track: body.recordingTrack,
      stereo: body.stereo,
      key: body.key,
    });
    return json(201, {
      success: true,
      recording: {
        recordingSid: started.recordingSid,
        callSid: body.callSid,
        source: carrier,
        status: started.status,
        recordingTrack: body.recordingTrack,
        recordingChannels: started.channels,
        recordingStatusCallback: started.statusCallback,
        keyMode: body.key ? 'client' : 'server',
      },
    });
  };

  router.route('post', `${CALL_RECORDINGS_PATH}/stop`, 'call_recordings_stop', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const { orgId } = principal;
    const body = await jsonBody(ctx, StopSchema);
    const stopped: Record<string, unknown>[] = [];
    if (body.recordingSid !== undefined) {
      if (TWILIO_RECORDING_SID.test(body.recordingSid) || (await carrierSideRequest(orgId, body.recordingSid))) {
        const request = await twilioRequestFor(principal, body.recordingSid);
        deps.limiter.take(orgId, request.callSid);
        stopped.push(await stopTwilioSide(orgId, body.recordingSid));
      } else {
        const row = await rowOf(orgId, body.recordingSid);
        const callRow = await visible(principal, row);
        if (!(await liveCallOf(orgId, row))) {
          const handed = await forwardToOwner(ctx, gateway, liveOwnerOf(row));
          if (handed) return handed;
        }
        deps.limiter.take(orgId, callRow?.externalId ?? row.id);
        const call = gateway.liveRecordingCall(orgId, row.id);
        if (!call) {
          throw new CallvaultError(ErrorCode.Conflict, 'the recording is not in progress on this gateway', { details: { status: apiStatus(row.status) } });
        }
        const summary = await call.stopRecording();
        if (summary) stopped.push({ recordingSid: summary.recordingSid, source: row.source, status: summary.status, durationMs: summary.durationMs });
      }
    } else {
      const callSid = body.callSid!;
      const known = await db.calls.getByExternalId(orgId, callSid);
      if (principal.userId !== null) {
        if (!canSeeCall(principal, known?.metadata)) throw notFound('nothing is recording this call');
      }
      if (!gateway.liveCall(orgId, callSid) && known?.status === 'active') {
        // The call's stream is on a peer: that gateway stops it (and any Twilio-side recording of the call).
        const handed = await forwardToOwner(ctx, gateway, known.ownerGateway);
        if (handed) return handed;
      }
      deps.limiter.take(orgId, callSid);
      const call = gateway.liveCall(orgId, callSid);
      const summary = call ? await call.stopRecording() : null;
      if (summary) stopped.push({ recordingSid: summary.recordingSid, source: call?.source === 'livekit' ? 'livekit' : 'gateway', status: summary.status, durationMs: summary.durationMs });
      for (const request of await db.imports.twilioRequestsOfCall(orgId, callSid)) {
        try {
          stopped.push(await stopTwilioSide(orgId, request.twilioRecordingSid));
        } catch (err) {
          // Already completed at Twilio (its callback is on the way): nothing left to stop.
          if (!isCallvaultError(err, ErrorCode.Conflict) && !isCallvaultError(err, ErrorCode.NotFound)) throw err;
        }
      }
      if (stopped.length === 0) throw notFound('nothing is recording this call');
    }
    return json(200, { success: true, stopped });
  });

  const twilioRequestOf = async (orgId: string, twilioRecordingSid: string) => {
    const request = await db.imports.twilioRequest(orgId, twilioRecordingSid);
    if (!request) throw notFound();
    return request;
  };

  /** A Twilio-side recording requested here, if the key may see its call. */
  const twilioRequestFor = async (principal: Principal, twilioRecordingSid: string) => {
    const request = await twilioRequestOf(principal.orgId, twilioRecordingSid);
    if (principal.userId !== null) {
      const known = await db.calls.getByExternalId(principal.orgId, request.callSid, carrierOfAccount(gateway, principal.orgId, request.accountSid));
      if (!canSeeCall(principal, known?.metadata)) throw notFound();
    }
    return request;
  };

  const stopTwilioSide = async (orgId: string, twilioRecordingSid: string): Promise<Record<string, unknown>> => {
    const request = await twilioRequestOf(orgId, twilioRecordingSid);
    const { carrier, client } = twilioClient(orgId, request.accountSid);
    const updated = await client
      .calls(request.callSid)
      .recordings(twilioRecordingSid)
      .update({ status: 'stopped' })
      .catch((err: unknown) => {
        throw twilioError(err, 'stop the recording');
      });
    return { recordingSid: twilioRecordingSid, source: carrier, status: updated.status };
  };

  const control = (action: 'pause' | 'resume') => async (ctx: RequestContext) => {
    const principal = await authenticate(ctx, db, 'control');
    const { orgId } = principal;
    const id = ctx.params[0] ?? '';
    const body = action === 'pause' ? await jsonBody(ctx, PauseSchema) : null;
    const carrierRequest = await carrierSideRequest(orgId, id);
    if (carrierRequest) {
      const request = await twilioRequestFor(principal, id);
      deps.limiter.take(orgId, request.callSid);
      const { carrier, client } = twilioClient(orgId, request.accountSid);
      const updated = await client
        .calls(request.callSid)
        .recordings(id)
        .update(action === 'pause' ? { status: 'paused', pauseBehavior: body!.behavior } : { status: 'in-progress' })
        .catch((err: unknown) => {
          throw twilioError(err, `${action} the recording`);
        });
      return json(200, { success: true, recordingSid: id, source: carrier, status: updated.status, paused: updated.status === 'paused' });
    }
    const row = await rowOf(orgId, id);
    const callRow = await visible(principal, row);
    if (!(await liveCallOf(orgId, row))) {
      const handed = await forwardToOwner(ctx, gateway, liveOwnerOf(row));
      if (handed) return handed;
    }
    deps.limiter.take(orgId, callRow?.externalId ?? row.id);
    const call = gateway.liveRecordingCall(orgId, row.id);
    if (!call) {
      throw new CallvaultError(ErrorCode.Conflict, 'the recording is not in progress on this gateway', { details: { status: apiStatus(row.status) } });
    }
    const pause: PauseRecord = action === 'pause' ? call.pauseRecording(body!.behavior) : call.resumeRecording();
    return json(200, { success: true, recordingSid: row.recordingSid, source: row.source, status: 'in-progress', paused: action === 'pause', pause });
  };

  router.route('post', `${CALL_RECORDINGS_PATH}/:id/pause`, 'call_recordings_pause', control('pause'));
  router.route('post', `${CALL_RECORDINGS_PATH}/:id/resume`, 'call_recordings_resume', control('resume'));

  router.route('post', `${CALL_RECORDINGS_PATH}/:id/retry`, 'call_recordings_retry', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const { orgId } = principal;
    const row = await rowOf(orgId, ctx.params[0] ?? '');
    await visible(principal, row);
    if (row.status === 'completed') {
      throw new CallvaultError(ErrorCode.Conflict, 'the recording is already complete', { details: { status: apiStatus(row.status) } });
    }
    await gateway.retryRecording(orgId, row.id);
    return json(202, { success: true, recordingSid: row.recordingSid, status: 'retrying' });
  });

  router.route('post', `${CALL_RECORDINGS_PATH}/poll`, 'call_recordings_poll', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    requireOrganisationKey(principal);
    const calls = await deps.twilio.poll(principal.orgId);
    // The shape the polling flow users come from reads (`processed`, `details[].status`), with what callvault adds.
    return json(200, {
      success: true,
      processed: calls.filter((c) => c.outcome === 'uploaded').length,
      details: calls.map((c) => ({ callSid: c.callSid, status: c.outcome, recordings: c.recordings, ...(c.error ? { error: c.error } : {}) })),
    });
  });
}
