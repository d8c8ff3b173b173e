/**
 * `POST /api/call-recordings/{id}/transcription` queues a transcription job of a completed server-key
 * recording (202); `GET` answers its status and, once completed, the transcript in transcript.json's shape.
 * Jobs live in PostgreSQL (recording_transcriptions) and are run by this module's runner: it claims a job with
 * a lease it renews while working, so a job whose gateway stopped or died is taken again (at the next start,
 * or by another instance) once the lease runs out. Each channel of a stereo recording is transcribed on its
 * own — channel 0 the caller, 1 the bot — and the entries are added to the call's transcript.
 * A mono recording mixed caller and bot into one channel: it is transcribed as one (`channels: "mixed"`),
 * its entries labelled `caller`, and they are not added to the call's transcript (they cannot be attributed).
 */
import { z } from 'zod';
import { CallvaultError, ErrorCode, toCallvaultError, type ErrorCode as ErrorCodeValue } from '../../errors/index.js';
import type { JsonObject, Recording as RecordingRow, TranscriptEntryInput, TranscriptionJob } from '../../db/index.js';
import type { GatewayPort } from '../../gateway/port.js';
import { authenticate, canSeeCall, type Principal } from '../../http/auth.js';
import { json, type Router } from '../../http/http.js';
import { createPocketSphinxEngine, type TranscriptionEngine, type TranscriptSegment } from '../../transcription/index.js';
import { conversationIdOf, isoMicros } from '../artifacts.js';
import { transcriptEntryJson } from '../../gateway/port.js';
import type { RecordingMedia } from '../recordings.js';
import { apiStatus, jsonBody } from './common.js';
import { addTranscriptionPaths } from './transcription-openapi.js';

export const TRANSCRIPTION_PATH = '/api/call-recordings/:id/transcription';
export const DEFAULT_TRANSCRIPTION_LEASE_MS = 60_000;
export const DEFAULT_TRANSCRIPTION_POLL_MS = 2_000;
export const DEFAULT_TRANSCRIPTION_MAX_SECONDS = 7_200;
/** A job claimed this many times without an answer (its gateway died each time) fails instead. */
export const MAX_TRANSCRIPTION_ATTEMPTS = 3;

/** What a failed job says: a stable code and a fixed sentence per code, never the engine's own output (logged). */
const FAILURE_MESSAGES: Partial<Record<ErrorCodeValue, string>> = {
  [ErrorCode.TranscriptionEngineUnavailable]: 'the transcription engine is not installed on the gateway that ran the job',
  [ErrorCode.TranscriptionEngineFailed]: 'the transcription engine failed',
  [ErrorCode.TranscriptionTooLong]: 'the recording is longer than a transcription job takes',
  [ErrorCode.TranscriptionNeedsServerKey]: 'the recording is in client key mode: the server cannot decrypt its audio',
  [ErrorCode.StorageUnavailable]: 'the recording could not be read from storage',
  [ErrorCode.BadRequest]: 'the engine has no model for the language asked for',
};

export function transcriptionEngines(gateway: GatewayPort): readonly TranscriptionEngine[] {
  const engines = gateway.options.transcription?.engines;
  return engines && engines.length > 0 ? engines : [defaultEngine];
}

const defaultEngine = createPocketSphinxEngine();

/** The body: every field optional; `diarization` defaults to true for stereo recordings, false for mono. */
export function transcriptionRequestSchema(engines: readonly TranscriptionEngine[]) {
  const names = engines.map((e) => e.name) as [string, ...string[]];
  return z
    .strictObject({
      engine: z.enum(names).optional(),
      language: z.string().min(2).max(35).optional(),
      diarization: z.boolean().optional(),
    })
    .superRefine((body, ctx) => {
      const engine = engines.find((e) => e.name === (body.engine ?? names[0]))!;
      if (body.language !== undefined && !engine.languages.includes(body.language)) {
        ctx.addIssue({ code: 'custom', path: ['language'], message: `${engine.name} transcribes ${engine.languages.join(', ')}` });
      }
    });
}

interface StoredSegment extends TranscriptSegment {
  channel: 'caller' | 'bot';
}

interface StoredResult {
  channels: 'separate' | 'mixed';
  sampleRate: number;
  durationMs: number;
  segments: StoredSegment[];
}

function entriesOf(row: RecordingRow, result: StoredResult): TranscriptEntryInput[] {
  return result.segments
    .map((s) => ({
      timestamp: isoMicros(new Date(row.startedAt.getTime() + s.startMs)),
      channel: s.channel,
      // As the call transcript has it: the caller's speech is the bot's input, the bot's its output.
      type: s.channel === 'caller' ? ('input' as const) : ('output' as const),
      text: s.text,
      confidence: s.confidence,
      durationMs: s.endMs - s.startMs,
      startMs: s.startMs,
    }))
    .sort((a, b) => a.startMs - b.startMs)
    .map(({ startMs: _startMs, ...entry }) => entry);
}

function notFound(message = 'no such recording'): CallvaultError {
  return new CallvaultError(ErrorCode.NotFound, message);
}

export interface TranscriptionRunner {
  /** A job was queued: an idle slot looks now rather than at its next poll. */
  kick(): void;
}

export function registerTranscriptionRoutes(router: Router, gateway: GatewayPort, runner: TranscriptionRunner): void {
  const { db } = gateway;
  const engines = transcriptionEngines(gateway);
  const schema = transcriptionRequestSchema(engines);
  addTranscriptionPaths(schema);

  const recordingFor = async (principal: Principal, id: string) => {
    const row = await db.recordings.get(principal.orgId, id);
    if (!row) throw notFound();
    const calls = await db.imports.callsByIds(principal.orgId, row.callId ? [row.callId] : []);
    const call = row.callId ? calls.get(row.callId) : undefined;
    if (!canSeeCall(principal, call?.metadata)) throw notFound();
    return { row, call };
  };

  const view = async (row: RecordingRow, job: TranscriptionJob) => {
    const result = job.status === 'completed' ? (job.result as unknown as StoredResult | null) : null;
    let transcript: Record<string, unknown> | null = null;
    if (result) {
      const calls = await db.imports.callsByIds(job.orgId, row.callId ? [row.callId] : []);
      const call = row.callId ? calls.get(row.callId) : undefined;
      transcript = {
        conversation_id: call ? conversationIdOf(call, row) : row.recordingSid,
        session_id: row.recordingSid,
        start_time: isoMicros(row.startedAt),
        end_time: row.endedAt ? isoMicros(row.endedAt) : null,
        entries: entriesOf(row, result).map(transcriptEntryJson),
      };
    }
    return {
      recordingSid: row.recordingSid,
      status: apiStatus(job.status),
      engine: job.engine,
      language: job.language,
      diarization: job.diarization,
      channels: result ? result.channels : job.diarization ? 'separate' : 'mixed',
      attempts: job.attempts,
      requestedAt: job.requestedAt.toISOString(),
      startedAt: job.startedAt?.toISOString() ?? null,
      finishedAt: job.finishedAt?.toISOString() ?? null,
      error: job.status === 'failed' ? { code: job.errorCode, message: job.errorMessage } : null,
      transcript,
    };
  };

  router.route('post', TRANSCRIPTION_PATH, 'call_recordings_transcription_post', async (ctx) => {
    const principal = await authenticate(ctx, db, 'control');
    const body = await jsonBody(ctx, schema);
    const { row } = await recordingFor(principal, ctx.params[0] ?? '');
    if (row.status !== 'completed') {
      throw new CallvaultError(ErrorCode.Conflict, 'only a completed recording is transcribed', { details: { status: apiStatus(row.status) } });
    }
    if (row.keyMode !== 'server') {
      throw new CallvaultError(ErrorCode.TranscriptionNeedsServerKey, 'the recording is in client key mode: the server cannot decrypt its audio to transcribe it', {
        details: { keyMode: row.keyMode },
      });
    }
    if (row.format === 'mp3') throw new CallvaultError(ErrorCode.Conflict, 'MP3 recordings are not transcribed', { details: { format: row.format } });
    if (body.diarization === true && row.channels !== 2) {
      throw new CallvaultError(ErrorCode.TracksNotSeparate, 'the recording mixed its tracks into one channel: ask with diarization false to transcribe it as one', {
        details: { channels: row.channels },
      });
    }
    const engine = engines.find((e) => e.name === (body.engine ?? engines[0]!.name))!;
    const job = await db.transcriptions.request(principal.orgId, row.id, {
      engine: engine.name,
      language: body.language ?? engine.languages[0]!,
      diarization: body.diarization ?? row.channels === 2,
    });
    if (!job) {
      const existing = await db.transcriptions.get(principal.orgId, row.id);
      throw new CallvaultError(
        ErrorCode.TranscriptionInProgress,
        existing?.status === 'completed' ? 'the recording is transcribed already' : 'a transcription of the recording is already under way',
        { details: { status: existing ? apiStatus(existing.status) : null } },
      );
    }
    gateway.options.logger.info({ recordingSid: row.recordingSid, engine: job.engine }, 'transcription queued');
    runner.kick();
    return json(202, { success: true, transcription: await view(row, job) }, { location: `/api/call-recordings/${row.recordingSid}/transcription` });
  });

  router.route('get', TRANSCRIPTION_PATH, 'call_recordings_transcription_get', async (ctx) => {
    const principal = await authenticate(ctx, db, 'read');
    const { row } = await recordingFor(principal, ctx.params[0] ?? '');
    const job = await db.transcriptions.get(principal.orgId, row.id);
    if (!job) throw notFound('no transcription was requested for this recording');
    return json(200, { success: true, transcription: await view(row, job) }, { 'cache-control': 'private, no-store' });
  });
}

/** Samples of one channel (or all channels averaged) of interleaved 16-bit PCM. */
function channelOf(pcm: Int16Array, channels: number, channel: number | 'mixed'): Int16Array {
  const frames = Math.floor(pcm.length / channels);
  const out = new Int16Array(frames);
  for (let i = 0; i < frames; i++) {
    if (channel !== 'mixed') out[i] = pcm[i * channels + channel]!;
    else {
      let sum = 0;
      for (let c = 0; c < channels; c++) sum += pcm[i * channels + c]!;
      out[i] = Math.round(sum / channels);
    }
  }
  return out;
}

/**
 * Runs queued jobs, `concurrency` at a time (none when 0), until the gateway stops running. A job still
 * running when the gateway closes is left in progress: its lease runs out and the next start takes it again.
 */
export function startTranscriptionRunner(gateway: GatewayPort, media: Pick<RecordingMedia, 'readPcm'>): TranscriptionRunner {
  const { db } = gateway;
  const logger = gateway.options.logger;
  const settings = gateway.options.transcription ?? {};
  const concurrency = settings.concurrency ?? 1;
  const leaseMs = settings.leaseMs ?? DEFAULT_TRANSCRIPTION_LEASE_MS;
  const pollMs = settings.pollIntervalMs ?? DEFAULT_TRANSCRIPTION_POLL_MS;
  const maxSeconds = settings.maxSeconds ?? DEFAULT_TRANSCRIPTION_MAX_SECONDS;
  const engines = transcriptionEngines(gateway);
  const signal = gateway.signal;
  const wakers = new Set<() => void>();
  const kick = () => {
    for (const wake of [...wakers]) wake();
  };
  if (concurrency === 0) return { kick: () => undefined };

  const idle = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wakers.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, pollMs);
      wakers.add(done);
      signal.addEventListener('abort', done, { once: true });
    });

  const fail = async (job: TranscriptionJob, error: CallvaultError) => {
    const code = FAILURE_MESSAGES[error.code] ? error.code : ErrorCode.TranscriptionEngineFailed;
    logger.error({ recordingId: job.recordingId, engine: job.engine, code: error.code, err: error }, 'transcription failed');
    await db.transcriptions.fail(job.id, code, FAILURE_MESSAGES[code]!);
  };

  const run = async (job: TranscriptionJob) => {
    const row = await db.recordings.get(job.orgId, job.recordingId);
    // Deleted meanwhile: its job went with it.
    if (!row) return;
    if (job.attempts > MAX_TRANSCRIPTION_ATTEMPTS) {
      await fail(job, new CallvaultError(ErrorCode.TranscriptionEngineFailed, 'the job was claimed too many times without an answer', { details: { attempts: job.attempts } }));
      return;
    }
    const engine = engines.find((e) => e.name === job.engine);
    if (!engine) {
      await fail(job, new CallvaultError(ErrorCode.TranscriptionEngineUnavailable, 'this gateway does not offer the engine', { details: { engine: job.engine } }));
      return;
    }
    const heartbeat = setInterval(() => {
      db.transcriptions.renew(job.id, leaseMs).catch((err: unknown) => logger.warn({ recordingId: job.recordingId, err }, 'transcription lease not renewed'));
    }, Math.max(100, Math.floor(leaseMs / 3)));
    heartbeat.unref();
    try {
      const audio = await media.readPcm(row, signal);
      if (!audio) throw new CallvaultError(ErrorCode.TranscriptionNeedsServerKey, 'the recording audio cannot be read as PCM here', { details: { keyMode: row.keyMode } });
      const frameBytes = audio.channels * 2;
      if (audio.plaintextSize / frameBytes / audio.sampleRate > maxSeconds) {
        throw new CallvaultError(ErrorCode.TranscriptionTooLong, 'the recording is too long to transcribe', { details: { maxSeconds } });
      }
      const bytes = new Uint8Array(audio.plaintextSize);
      let at = 0;
      for await (const chunk of audio.pcm) {
        bytes.set(chunk.subarray(0, Math.min(chunk.length, bytes.length - at)), at);
        at += chunk.length;
      }
      const pcm = new Int16Array(bytes.buffer, 0, Math.floor(Math.min(at, bytes.length) / 2));
      const separate = job.diarization && audio.channels === 2;
      const segments: StoredSegment[] = [];
      if (separate) {
        for (const [index, channel] of [[0, 'caller'], [1, 'bot']] as const) {
          const found = await engine.transcribe(channelOf(pcm, 2, index), audio.sampleRate, job.language, signal);
          segments.push(...found.map((s) => ({ ...s, channel })));
        }
      } else {
        const found = await engine.transcribe(channelOf(pcm, audio.channels, 'mixed'), audio.sampleRate, job.language, signal);
        segments.push(...found.map((s) => ({ ...s, channel: 'caller' as const })));
      }
      const result: StoredResult = {
        channels: separate ? 'separate' : 'mixed',
        sampleRate: audio.sampleRate,
        durationMs: Math.round((pcm.length / audio.channels / audio.sampleRate) * 1000),
        segments,
      };
      const transcript = separate && row.callId ? { callId: row.callId, entries: entriesOf(row, result) } : undefined;
      if (await db.transcriptions.complete(job.id, result as unknown as JsonObject, transcript)) {
        logger.info({ recordingSid: row.recordingSid, engine: engine.name, segments: segments.length }, 'transcription completed');
      }
    } catch (err) {
      // The gateway is closing: the job stays in progress and is taken again once its lease runs out.
      if (signal.aborted) return;
      await fail(job, toCallvaultError(err, ErrorCode.TranscriptionEngineFailed));
    } finally {
      clearInterval(heartbeat);
    }
  };

  const slot = async () => {
    while (!signal.aborted) {
      if (gateway.state !== 'running') {
        if (gateway.state === 'draining' || gateway.state === 'closed') return;
        await idle();
        continue;
      }
      let job: TranscriptionJob | null = null;
      try {
        job = await db.transcriptions.claim(leaseMs);
        if (job) await run(job);
      } catch (err) {
        if (signal.aborted) return;
        logger.warn({ recordingId: job?.recordingId, code: toCallvaultError(err).code, err }, 'transcription runner step failed');
      }
      if (!job) await idle();
    }
  };
  for (let i = 0; i < concurrency; i++) void slot();
  return { kick };
}
