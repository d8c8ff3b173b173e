import { EventEmitter } from 'node:events';
import type { RecordingOptions } from '../../config/index.js';
import { CallvaultError, ErrorCode, isCallvaultError, toCallvaultError } from '../../errors/index.js';
import type { Call, GatewayPort, Recording, RecordingSummary, TrackRole } from '../../gateway/port.js';
import type { InputFrame } from '../../pipeline/index.js';
import { processLoopWatch } from './loop-watch.js';
import { TrackTimeline } from './timeline.js';

export const LIVEKIT_METRICS_SOURCE = 'livekit';
const BYTES_PER_SAMPLE = 2;

export interface RoomSessionInit {
  orgId: string;
  room: string;
  roomSid: string;
  options: RecordingOptions & { enabled: true };
  /** What started it, kept in the recording's metadata. */
  trigger: 'api' | 'webhook' | 'egress';
  metadata?: Record<string, unknown>;
  gapThresholdMs?: number;
  /** The platform's id of the conversation (room metadata `conversationId`, else the room name): the call's conversation_id. */
  conversationId?: string;
}

interface RoomSessionEvents {
  closed: [RecordingSummary | null];
}

/**
 * One room recording: one Call (id = the room SID) and one timeline that every audio source of the room
 * shares, whether it comes from the hidden participant or from Track Egress sockets.
 */
export class LivekitRoomSession extends EventEmitter<RoomSessionEvents> {
  readonly room: string;
  readonly roomSid: string;
  readonly call: Call;
  readonly recording: Recording;
  /** Wall time (ms) of position 0. */
  readonly originMs: number;
  readonly #gateway: GatewayPort;
  readonly #gapThresholdMs: number | undefined;
  readonly #inputs = new Map<string, RoomTrackInput>();
  #closing: Promise<RecordingSummary | null> | null = null;
  #closedEmitted = false;
  /** Stops holding the event-loop watch the session's timelines read their stalls from. */
  readonly #releaseLoopWatch: () => void;

  private constructor(gateway: GatewayPort, init: RoomSessionInit, call: Call, recording: Recording, originMs: number) {
    super();
    this.#gateway = gateway;
    this.room = init.room;
    this.roomSid = init.roomSid;
    this.call = call;
    this.recording = recording;
    this.originMs = originMs;
    this.#gapThresholdMs = init.gapThresholdMs;
    this.#releaseLoopWatch = processLoopWatch.retain();
    call.once('closed', () => {
      // The gateway may close the call itself (shutdown); the session ends with it.
      void this.close();
    });
  }

  static async start(gateway: GatewayPort, init: RoomSessionInit): Promise<LivekitRoomSession> {
    const now = gateway.now;
    // The LiveKit org may own no API key or Twilio account, so start-up has not created it.
    await gateway.db.organisations.ensure(init.orgId);
    const call = await gateway.openCall({
      orgId: init.orgId,
      source: 'livekit',
      externalId: init.roomSid,
      metadata: { room: init.room, roomSid: init.roomSid, ...(init.conversationId === undefined ? {} : { conversationId: init.conversationId }) },
      startedAt: new Date(now()),
    });
    try {
      const originMs = now();
      const recording = await call.startRecording(init.options, {
        room: init.room,
        roomSid: init.roomSid,
        trigger: init.trigger,
        recordingOptions: { enabled: true, stereo: init.options.stereo === true, keyMode: init.options.key ? 'client' : 'server' },
        ...init.metadata,
      });
      return new LivekitRoomSession(gateway, init, call, recording, originMs);
    } catch (err) {
      // The recording never started: the call is aborted (its row ended), the cause goes to the caller.
      call.destroy(toCallvaultError(err));
      throw err;
    }
  }

  get closed(): boolean {
    return this.#closing !== null;
  }

  #userTagged = false;

  /**
   * Tags the room's call with the user a participant names (its `userId` attribute, or `userId` in its metadata),
   * so user-bound API keys see it. The first user named stays the call's.
   */
  tagUser(userId: string): void {
    if (this.#userTagged) return;
    this.#userTagged = true;
    this.#gateway.db.calls.tagIfUnset(this.call.dbId, { userId }).catch((err: unknown) => {
      this.#userTagged = false;
      this.#gateway.options.logger.warn({ room: this.room, err }, 'could not tag the room call with its user');
    });
  }

  /**
   * The input of one published track. The same participant and track sid reuse their input (an egress
   * socket that reconnects continues its track); a republished track has a new sid and a new input.
   */
  openTrack(
    source: { participant: string; track: string },
    role: TrackRole,
    sampleRate: number,
    timing: { gapThresholdMs?: number; maxAheadOfClockMs?: number } = {},
  ): RoomTrackInput {
    const id = `${source.participant}/${source.track}`;
    const existing = this.#inputs.get(id);
    if (existing) {
      existing.reopen(timing.maxAheadOfClockMs);
      return existing;
    }
    this.call.addTrack({ id, role, encoding: 'pcm_s16le', sampleRate });
    const timeline = new TrackTimeline({
      originMs: this.originMs,
      sampleRate,
      loop: processLoopWatch,
      ...((timing.gapThresholdMs ?? this.#gapThresholdMs) === undefined ? {} : { gapThresholdMs: timing.gapThresholdMs ?? this.#gapThresholdMs }),
    });
    const input = new RoomTrackInput(this.#gateway, this.call, {
      id,
      role,
      sampleRate,
      timeline,
      room: this.room,
      ...(timing.maxAheadOfClockMs === undefined ? {} : { maxAheadOfClockMs: timing.maxAheadOfClockMs }),
    });
    this.#inputs.set(id, input);
    return input;
  }

  /** Finishes the room's recording: every input ends, the call is closed and its recording finalised. Idempotent. */
  close(): Promise<RecordingSummary | null> {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      for (const input of this.#inputs.values()) input.end();
      const summary = await this.call.close();
      this.#emitClosed(summary);
      return summary;
    })();
    return this.#closing;
  }

  /**
   * Aborts the room's recording with `err` (the call is destroyed: upload aborted, row failed, spool kept for
   * a retry). Idempotent; a close() under way settles with what the destroyed call gives. Emits `closed` once.
   */
  destroy(err: CallvaultError): void {
    for (const input of this.#inputs.values()) input.end();
    this.call.destroy(err);
    if (!this.#closing) this.#closing = Promise.resolve(null);
    this.#emitClosed(null);
  }

  #emitClosed(summary: RecordingSummary | null): void {
    if (this.#closedEmitted) return;
    this.#closedEmitted = true;
    this.#releaseLoopWatch();
    this.emit('closed', summary);
  }
}

/** Turns one track's PCM into positioned frames. Muted or ended tracks contribute silence, not frames. */
export class RoomTrackInput {
  readonly id: string;
  readonly role: TrackRole;
  readonly sampleRate: number;
  readonly #gateway: GatewayPort;
  readonly #call: Call;
  readonly #timeline: TrackTimeline;
  readonly #room: string;
  #muted = false;
  #ended = false;
  #carry: Buffer | null = null;
  /** How far this track's audio may run ahead of wall time since the recording's origin; unbounded when unset. */
  #maxAheadOfClockMs: number | undefined;
  // Resolved once per track: a label lookup per message costs more than the increment.
  readonly #framesReceived;
  readonly #bytesReceived;

  constructor(
    gateway: GatewayPort,
    call: Call,
    init: { id: string; role: TrackRole; sampleRate: number; timeline: TrackTimeline; room: string; maxAheadOfClockMs?: number },
  ) {
    this.#gateway = gateway;
    this.#maxAheadOfClockMs = init.maxAheadOfClockMs;
    this.#call = call;
    this.id = init.id;
    this.role = init.role;
    this.sampleRate = init.sampleRate;
    this.#timeline = init.timeline;
    this.#room = init.room;
    this.#framesReceived = gateway.metrics.framesReceived.labels({ source: LIVEKIT_METRICS_SOURCE, track: init.role });
    this.#bytesReceived = gateway.metrics.bytesReceived.labels({ source: LIVEKIT_METRICS_SOURCE });
  }

  get muted(): boolean {
    return this.#muted;
  }

  /** Places and records `pcm` (s16le mono) that arrived at `arrivedAt` (wall ms). */
  push(pcm: Uint8Array, arrivedAt: number): void {
    const metrics = this.#gateway.metrics;
    this.#framesReceived.inc();
    this.#bytesReceived.inc(pcm.byteLength);
    if (this.#ended || this.#muted) {
      metrics.framesDropped.inc({ source: LIVEKIT_METRICS_SOURCE, reason: this.#ended ? 'ended' : 'muted' });
      return;
    }
    // A WebSocket message may split a sample; the odd byte waits for the next message.
    let data = this.#carry ? Buffer.concat([this.#carry, pcm]) : Buffer.from(pcm);
    this.#carry = null;
    if (data.byteLength % BYTES_PER_SAMPLE !== 0) {
      this.#carry = Buffer.from(data.subarray(data.byteLength - 1));
      data = data.subarray(0, data.byteLength - 1);
    }
    if (data.byteLength === 0) return;
    const samples = data.byteLength / BYTES_PER_SAMPLE;
    if (this.#maxAheadOfClockMs !== undefined) {
      // Twilio's rule for a replay faster than real time: the audio may end at most MAX_AHEAD_OF_CLOCK_SECONDS
      // after the wall-clock time elapsed since the recording's origin. The frame that would cross it is refused.
      const endMs = ((this.#timeline.peek(arrivedAt) + samples) * 1000) / this.sampleRate;
      const elapsedMs = arrivedAt - this.#timeline.originMs;
      if (endMs > elapsedMs + this.#maxAheadOfClockMs) {
        metrics.framesDropped.inc({ source: LIVEKIT_METRICS_SOURCE, reason: ErrorCode.StreamAheadOfClock });
        throw new CallvaultError(ErrorCode.StreamAheadOfClock, 'egress audio runs too far ahead of wall-clock time', {
          details: { mediaEndMs: Math.round(endMs), elapsedMs, maxAheadOfClockMs: this.#maxAheadOfClockMs },
        });
      }
    }
    const frame: InputFrame = {
      trackId: this.id,
      role: this.role,
      encoding: 'pcm_s16le',
      sampleRate: this.sampleRate,
      position: this.#timeline.place(arrivedAt, samples),
      data,
    };
    try {
      this.#call.pushFrame(frame, arrivedAt);
    } catch (err) {
      // Beyond the hard bound (the sender is that far ahead of the pipeline): the source must stop, not have its
      // frames dropped one by one. The caller closes it (egress: 1013); everything before is in the journal.
      if (isCallvaultError(err, ErrorCode.Overloaded)) metrics.framesDropped.inc({ source: LIVEKIT_METRICS_SOURCE, reason: err.code });
      throw err;
    }
  }

  /** Mute and unmute both break continuity: the audio after an unmute is anchored on wall time. */
  setMuted(muted: boolean): void {
    if (muted === this.#muted) return;
    this.#muted = muted;
    this.#carry = null;
    this.#timeline.breakContinuity();
  }

  /** The source went away (unpublished, left, socket closed); a later reopen anchors on wall time. */
  end(): void {
    this.#ended = true;
    this.#carry = null;
    this.#timeline.breakContinuity();
  }

  reopen(maxAheadOfClockMs?: number): void {
    if (maxAheadOfClockMs !== undefined) this.#maxAheadOfClockMs = maxAheadOfClockMs;
    this.#ended = false;
    this.#muted = false;
    this.#timeline.breakContinuity();
  }
}
