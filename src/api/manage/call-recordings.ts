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
import { authenticate } from '../../http/auth.js';
import { json, type HttpResult, type RequestContext, type Router, type StreamedResult } from '../../http/http.js';
import { apiStatus, CONTAINER_FORMAT, jsonBody, servedFormat, storedStatusOf, twilioAccountOf, TWILIO_RECORDING_SID } from './common.js';
import { agentRecordingOptions, layerRecordingOptions, sealClientKey, twilioRequestKeyContext } from '../../gateway/port.js';

export const CALL_RECORDINGS_PATH = '/api/call-recordings';
export const DEFAULT_LIST_LIMIT = 20;
export const MAX_LIST_LIMIT = 100;

const STATUSES: readonly RecordingStatus[] = ['in_progress', 'uploading', 'completed', 'failed'];
const SOURCES: readonly RecordingSource[] = ['gateway', 'livekit', 'twilio', 'elevenlabs'];

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

const StartSchema = z
  .object({
    callSid: z.string().min(1).max(200),
    recordingTrack: z.enum(['inbound', 'outbound', 'both']).default('both'),
    stereo: z.boolean().optional(),
    key: z.string().min(1).optional(),
    source: z.enum(['gateway', 'twilio']).default('gateway'),
  })
  .strict();

const StopSchema = z
  .object({ recordingSid: z.string().min(1).max(200).optional(), callSid: z.string().min(1).max(200).optional() })
  .strict()
  .refine((b) => (b.recordingSid === undefined) !== (b.callSid === undefined), 'give exactly one of recordingSid or callSid');

const PauseSchema = z.object({ behavior: z.enum(['skip', 'silence']).default('silence') }).strict();

export interface CallRecordingRoutesDeps {
  serveMedia: RecordingMediaServer;
  remove: RecordingRemover;
  twilio: TwilioImports;
}

export function registerCallRecordingRoutes(router: Router, gateway: GatewayPort, deps: CallRecordingRoutesDeps): void {
  const { db } = gateway;

  const twilioClient = (orgId: string, accountSid: unknown) =>
    createTwilioRestClient(twilioAccountOf(gateway, orgId, accountSid), { baseUrl: gateway.options.twilio.apiBaseUrl });

  router.route('get', CALL_RECORDINGS_PATH, 'call_recordings_list', async (ctx) => {
    const { orgId } = await authenticate(ctx, db);
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
    const { orgId } = await authenticate(ctx, db);
    const row = await rowOf(orgId, ctx.params[0] ?? '');
    const calls = await db.imports.callsByIds(orgId, row.callId ? [row.callId] : []);
    const call = row.callId ? calls.get(row.callId) : undefined;
    return json(200, { success: true, recording: { ...recordingView(row, call, gateway.publicUrl), call: callView(call) } });
  });

  router.route('get', `${CALL_RECORDINGS_PATH}/:id/media`, 'call_recordings_media', async (ctx) => {
    const { orgId } = await authenticate(ctx, db);
    const row = await rowOf(orgId, ctx.params[0] ?? '');
    if (row.status !== 'completed' && row.status !== 'uploading') {
      throw new CallvaultError(ErrorCode.Conflict, `the recording is ${row.status.replace('_', ' ')}`, { details: { status: apiStatus(row.status) } });
    }
    return deps.serveMedia(ctx, row);
  });

  router.route('del', `${CALL_RECORDINGS_PATH}/:id`, 'call_recordings_delete', async (ctx) => {
    const { orgId } = await authenticate(ctx, db);
    const row = await rowOf(orgId, ctx.params[0] ?? '');
    await deps.remove(orgId, row);
    gateway.options.logger.info({ recordingSid: row.recordingSid }, 'recording deleted');
    return { status: 204, headers: {}, body: '' };
  });

  // ---- control mid-call -------------------------------------------------------------------------------

  router.route('post', `${CALL_RECORDINGS_PATH}/start`, 'call_recordings_start', async (ctx) => {
    const { orgId } = await authenticate(ctx, db);
    const body = await jsonBody(ctx, StartSchema);
    if (body.key !== undefined) assertClientKeyStrong(body.key);
    return body.source === 'twilio' ? startTwilioSide(orgId, body) : startOnGateway(orgId, body);
  });

  const startOnGateway = async (orgId: string, body: z.infer<typeof StartSchema>): Promise<HttpResult> => {
    const call = gateway.liveCall(orgId, body.callSid);
    if (!call) throw notFound('no active call with this callSid');
    let tracks: string[] | undefined;
    if (body.recordingTrack !== 'both') {
      if (call.source !== 'twilio') throw badRequest('recordingTrack inbound/outbound applies to Twilio calls only');
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
        source: call.source === 'twilio' ? 'gateway' : 'livekit',
        status: 'in-progress',
        recordingTrack: body.recordingTrack,
        keyMode: recording.keyMode,
        channels: recording.channels,
      },
    });
  };

  const startTwilioSide = async (orgId: string, body: z.infer<typeof StartSchema>): Promise<HttpResult> => {
    const callRow = await db.calls.getByExternalId(orgId, body.callSid, 'twilio');
    if (!callRow || callRow.status !== 'active') throw notFound('no active call with this callSid');
    const account = twilioAccountOf(gateway, orgId, callRow.metadata['accountSid']);
    const client = createTwilioRestClient(account, { baseUrl: gateway.options.twilio.apiBaseUrl });
    const existing = await client
      .calls(body.callSid)
      .recordings.list({ limit: 50 })
      .catch((err: unknown) => {
        throw twilioError(err, 'list the call recordings');
      });
    const active = existing.find((r) => r.status === 'in-progress' || r.status === 'paused');
    if (active) {
      throw new CallvaultError(ErrorCode.Conflict, 'Twilio is already recording this call', { details: { twilioRecordingSid: active.sid } });
    }
    const created = await client
      .calls(body.callSid)
      .recordings.create({
        recordingChannels: 'dual',
        recordingTrack: body.recordingTrack,
        recordingStatusCallback: `${gateway.publicUrl}/webhooks/twilio-recording`,
        recordingStatusCallbackMethod: 'POST',
        recordingStatusCallbackEvent: ['in-progress', 'completed', 'absent'],
      })
      .catch((err: unknown) => {
        throw twilioError(err, 'start recording the call');
      });
    const sealed = body.key === undefined ? null : sealClientKey(gateway.options.keyring, twilioRequestKeyContext(orgId, created.sid), body.key);
    await db.imports.saveTwilioRequest({
      orgId,
      twilioRecordingSid: created.sid,
      callSid: body.callSid,
      accountSid: account.accountSid,
      stereo: body.stereo ?? null,
      keyId: sealed?.keyId ?? null,
      sealedKey: sealed ? Buffer.from(sealed.sealed) : null,
    });
    return json(201, {
      success: true,
      recording: {
        recordingSid: created.sid,
        callSid: body.callSid,
        source: 'twilio',
        status: created.status,
        recordingTrack: body.recordingTrack,
        keyMode: body.key ? 'client' : 'server',
      },
    });
  };

  router.route('post', `${CALL_RECORDINGS_PATH}/stop`, 'call_recordings_stop', async (ctx) => {
    const { orgId } = await authenticate(ctx, db);
    const body = await jsonBody(ctx, StopSchema);
    const stopped: Record<string, unknown>[] = [];
    if (body.recordingSid !== undefined) {
      if (TWILIO_RECORDING_SID.test(body.recordingSid)) {
        stopped.push(await stopTwilioSide(orgId, body.recordingSid));
      } else {
        const row = await rowOf(orgId, body.recordingSid);
        const call = gateway.liveRecordingCall(orgId, row.id);
        if (!call) {
          throw new CallvaultError(ErrorCode.Conflict, 'the recording is not in progress on this gateway', { details: { status: apiStatus(row.status) } });
        }
        const summary = await call.stopRecording();
        if (summary) stopped.push({ recordingSid: summary.recordingSid, source: row.source, status: summary.status, durationMs: summary.durationMs });
      }
    } else {
      const callSid = body.callSid!;
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

  const stopTwilioSide = async (orgId: string, twilioRecordingSid: string): Promise<Record<string, unknown>> => {
    const request = await twilioRequestOf(orgId, twilioRecordingSid);
    const updated = await twilioClient(orgId, request.accountSid)
      .calls(request.callSid)
      .recordings(twilioRecordingSid)
      .update({ status: 'stopped' })
      .catch((err: unknown) => {
        throw twilioError(err, 'stop the recording');
      });
    return { recordingSid: twilioRecordingSid, source: 'twilio', status: updated.status };
  };

  const control = (action: 'pause' | 'resume') => async (ctx: RequestContext) => {
    const { orgId } = await authenticate(ctx, db);
    const id = ctx.params[0] ?? '';
    const body = action === 'pause' ? await jsonBody(ctx, PauseSchema) : null;
    if (TWILIO_RECORDING_SID.test(id)) {
      const request = await twilioRequestOf(orgId, id);
      const updated = await twilioClient(orgId, request.accountSid)
        .calls(request.callSid)
        .recordings(id)
        .update(action === 'pause' ? { status: 'paused', pauseBehavior: body!.behavior } : { status: 'in-progress' })
        .catch((err: unknown) => {
          throw twilioError(err, `${action} the recording`);
        });
      return json(200, { success: true, recordingSid: id, source: 'twilio', status: updated.status, paused: updated.status === 'paused' });
    }
    const row = await rowOf(orgId, id);
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
    const { orgId } = await authenticate(ctx, db);
    const row = await rowOf(orgId, ctx.params[0] ?? '');
    if (row.status === 'completed') {
      throw new CallvaultError(ErrorCode.Conflict, 'the recording is already complete', { details: { status: apiStatus(row.status) } });
    }
    await gateway.retryRecording(orgId, row.id);
    return json(202, { success: true, recordingSid: row.recordingSid, status: 'retrying' });
  });

  router.route('post', `${CALL_RECORDINGS_PATH}/poll`, 'call_recordings_poll', async (ctx) => {
    const { orgId } = await authenticate(ctx, db);
    const calls = await deps.twilio.poll(orgId);
    return json(200, { success: true, calls });
  });
}
