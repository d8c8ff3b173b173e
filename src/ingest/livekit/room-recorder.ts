import { RoomServiceClient, type WebhookEvent } from 'livekit-server-sdk';
import type { RecordingOptions } from '../../config/index.js';
import { CallvaultError, ErrorCode, toCallvaultError } from '../../errors/index.js';
import type { GatewayPort, RecordingSummary } from '../../gateway/port.js';
import { LivekitRoomSession } from './room-session.js';
import { RoomParticipant, type LivekitConnection } from './room-participant.js';
import { agentRecordingOptions } from '../../gateway/port.js';
import { agentIdentitiesWith, agentPolicyCandidates, roomConversationId, agentPolicyOf, namedAgentIdentities, participantRecordingOptions, resolveRecordingOptions, roomRecordingOptions } from './room-options.js';

export interface LivekitIngestConfig extends LivekitConnection {
  /** The organisation that owns the LiveKit project; its rooms' recordings belong to it. */
  org: string;
  /**
   * How long an egress-started recording outlives its last egress socket, so a socket that reconnects
   * (network blip, egress restart) continues the same recording instead of starting a second one.
   */
  egressReconnectGraceMs?: number;
  /** How far an egress socket's audio may run ahead of wall-clock time; the gateway's MAX_AHEAD_OF_CLOCK_SECONDS by default. */
  maxAheadOfClockMs?: number;
}

export const DEFAULT_EGRESS_RECONNECT_GRACE_MS = 5000;

interface RoomEntry {
  starting: Promise<LivekitRoomSession>;
  session?: LivekitRoomSession;
  participant?: RoomParticipant;
  /** Egress sockets feeding the room; an egress-started recording ends with the last of them. */
  egressSockets: number;
  trigger: 'api' | 'webhook' | 'egress';
  /** Pending close of an egress-started recording whose last socket went away. */
  graceTimer?: NodeJS.Timeout;
}

export interface StartedRoomRecording {
  roomSid: string;
  recordingSid: string;
  session: LivekitRoomSession;
}

function httpUrl(url: string): string {
  return url.replace(/^ws(s?):\/\//, 'http$1://');
}

/**
 * Every LiveKit room the gateway records, by room name: at most one recording per room, whatever starts it
 * (API, webhook, egress socket) and however its audio arrives (hidden participant, egress sockets).
 */
export class LivekitRoomRecorder {
  readonly config: LivekitIngestConfig;
  readonly #gateway: GatewayPort;
  readonly #rooms = new Map<string, RoomEntry>();
  readonly #roomService: RoomServiceClient;

  constructor(gateway: GatewayPort, config: LivekitIngestConfig) {
    this.#gateway = gateway;
    this.config = config;
    this.#roomService = new RoomServiceClient(httpUrl(config.url), config.apiKey, config.apiSecret);
  }

  /** The live session of a room, if it is recording. */
  session(room: string): LivekitRoomSession | undefined {
    return this.#rooms.get(room)?.session;
  }

  isRecording(room: string): boolean {
    return this.#rooms.has(room);
  }

  async #lookupRoom(room: string): Promise<{ sid: string; metadata: string }> {
    let rooms;
    try {
      rooms = await this.#roomService.listRooms([room]);
    } catch (cause) {
      throw new CallvaultError(ErrorCode.Internal, 'LiveKit did not answer the room lookup', { cause, retryable: true });
    }
    const found = rooms.find((r) => r.name === room);
    if (!found?.sid) throw new CallvaultError(ErrorCode.NotFound, `room ${room} does not exist`);
    return { sid: found.sid, metadata: found.metadata };
  }

  /**
   * The recording policy of the room's agent, if it has one: the first of the candidates (room metadata
   * `agentId`, then the named agent identities) that has a policy.
   */
  #agentPolicy(identities: Iterable<string>): Promise<Partial<RecordingOptions> | undefined> {
    const { db, options } = this.#gateway;
    return agentPolicyOf(identities, (agentId) => agentRecordingOptions(db, options.keyring, this.config.org, agentId));
  }

  /**
   * Starts recording a room with the hidden participant. CONFLICT when the room is already recording,
   * NOT_FOUND when LiveKit does not know it.
   */
  async startRoomRecording(params: {
    room: string;
    trigger: 'api' | 'webhook';
    request?: Partial<RecordingOptions>;
    participantMetadata?: string;
    knownRoom?: { sid: string; metadata: string };
  }): Promise<StartedRoomRecording> {
    if (this.#rooms.has(params.room)) throw new CallvaultError(ErrorCode.Conflict, `room ${params.room} is already recording`);
    const entry = this.#reserve(params.room, params.trigger, async () => {
      const info = params.knownRoom ?? (await this.#lookupRoom(params.room));
      const room = roomRecordingOptions(info.metadata);
      const participant = participantRecordingOptions(params.participantMetadata);
      const named = namedAgentIdentities({ roomMetadata: info.metadata, room, participant, request: params.request });
      const agent = await this.#agentPolicy(agentPolicyCandidates(info.metadata, named));
      const agentIdentities = agentIdentitiesWith(named, agent);
      const { options } = resolveRecordingOptions({
        defaults: this.#gateway.options.recording.defaults,
        agent,
        room,
        participant,
        request: params.request,
      });
      if (!options.enabled) throw new CallvaultError(ErrorCode.RecordingOptionsInvalid, 'recording options do not enable recording');
      const session = await LivekitRoomSession.start(this.#gateway, {
        orgId: this.config.org,
        room: params.room,
        roomSid: info.sid,
        options: { ...options, enabled: true },
        trigger: params.trigger,
        conversationId: roomConversationId(info.metadata) ?? params.room,
      });
      try {
        const participant = await RoomParticipant.join({
          connection: this.config,
          session,
          agentIdentities,
          logger: this.#gateway.options.logger,
          now: this.#gateway.now,
          artifacts: this.#gateway.db.artifacts,
          onRoomEmpty: () => void this.finish(params.room).catch((err: unknown) => this.#logged(err, params.room, 'could not finish an empty room')),
        });
        const current = this.#rooms.get(params.room);
        if (current) current.participant = participant;
        if (session.closed) await participant.leave();
      } catch (cause) {
        await session.close();
        throw new CallvaultError(ErrorCode.Internal, 'could not join the LiveKit room', { cause, retryable: true });
      }
      return session;
    });
    const session = await entry.starting;
    return { roomSid: session.roomSid, recordingSid: session.recording.recordingSid, session };
  }

  #reserve(room: string, trigger: RoomEntry['trigger'], start: () => Promise<LivekitRoomSession>): RoomEntry {
    const entry: RoomEntry = { starting: Promise.resolve(null as unknown as LivekitRoomSession), egressSockets: 0, trigger };
    this.#rooms.set(room, entry);
    entry.starting = start().then(
      (session) => {
        entry.session = session;
        const untrack = this.#gateway.trackSocket(() => void this.finish(room).catch((err: unknown) => this.#logged(err, room, 'could not finish a room at shutdown')));
        session.once('closed', () => {
          untrack();
          void entry.participant?.leave().catch((err: unknown) => this.#logged(err, room, 'hidden participant could not leave the room'));
          if (this.#rooms.get(room) === entry) this.#rooms.delete(room);
        });
        this.#gateway.options.logger.info({ room, roomSid: session.roomSid, recordingSid: session.recording.recordingSid, trigger }, 'livekit room recording started');
        return session;
      },
      (err: unknown) => {
        if (this.#rooms.get(room) === entry) this.#rooms.delete(room);
        throw err;
      },
    );
    // Callers that only fire-and-forget must not surface an unhandled rejection.
    entry.starting.catch(() => undefined);
    return entry;
  }

  /** A failure off the recording's path (leaving a room, a fire-and-forget finish): logged, never thrown. */
  #logged(err: unknown, room: string, message: string): void {
    const error = toCallvaultError(err);
    this.#gateway.options.logger.warn({ room, code: error.code, err: error }, message);
  }

  /** Finishes a room's recording (API stop, room finished, room empty). NOT_FOUND when it is not recording. */
  async finish(room: string): Promise<RecordingSummary | null> {
    const entry = this.#rooms.get(room);
    if (!entry) throw new CallvaultError(ErrorCode.NotFound, `room ${room} is not recording`);
    const session = await entry.starting;
    await entry.participant?.leave().catch((err: unknown) => this.#logged(err, room, 'hidden participant could not leave the room'));
    return session.close();
  }

  /**
   * The session an egress socket feeds: the room's current one, or a new one started for it. Recording
   * options come from the room's metadata (when LiveKit can be asked) over the server default.
   */
  async attachEgress(target: { room: string; roomSid?: string }): Promise<{ session: LivekitRoomSession; detach: () => void }> {
    let entry = this.#rooms.get(target.room);
    const current = entry ? await entry.starting.catch(() => null) : null;
    if (current?.closed) {
      // That recording is finalising: audio fed to it would be dropped. Let it finish, then start afresh.
      await current.close();
      entry = this.#rooms.get(target.room);
    }
    if (!entry) {
      entry = this.#reserve(target.room, 'egress', async () => {
        const info = target.roomSid ? { sid: target.roomSid, metadata: '' } : await this.#lookupRoom(target.room);
        const { options } = resolveRecordingOptions({
          defaults: this.#gateway.options.recording.defaults,
          room: roomRecordingOptions(info.metadata),
          request: { enabled: true },
        });
        return LivekitRoomSession.start(this.#gateway, {
          orgId: this.config.org,
          room: target.room,
          roomSid: info.sid,
          options: { ...options, enabled: true },
          trigger: 'egress',
          conversationId: roomConversationId(info.metadata) ?? target.room,
        });
      });
    }
    const attached = entry;
    attached.egressSockets++;
    clearTimeout(attached.graceTimer);
    attached.graceTimer = undefined;
    let session: LivekitRoomSession;
    try {
      session = await attached.starting;
    } catch (err) {
      attached.egressSockets--;
      throw err;
    }
    let detached = false;
    return {
      session,
      detach: () => {
        if (detached) return;
        detached = true;
        attached.egressSockets--;
        if (attached.egressSockets === 0 && attached.trigger === 'egress') {
          attached.graceTimer = setTimeout(() => {
            attached.graceTimer = undefined;
            if (attached.egressSockets === 0) void session.close();
          }, this.config.egressReconnectGraceMs ?? DEFAULT_EGRESS_RECONNECT_GRACE_MS);
          attached.graceTimer.unref();
        }
      },
    };
  }

  /**
   * A verified LiveKit webhook: room_started / participant_joined start a recording when metadata asks for
   * one; room_finished finishes it.
   */
  async handleWebhook(event: WebhookEvent): Promise<void> {
    const room = event.room?.name;
    if (!room) return;
    switch (event.event) {
      case 'room_started': {
        const info = { sid: event.room?.sid ?? '', metadata: event.room?.metadata ?? '' };
        if (!roomRecordingOptions(info.metadata)?.enabled || this.#rooms.has(room)) return;
        await this.startRoomRecording({ room, trigger: 'webhook', ...(info.sid ? { knownRoom: info } : {}) });
        return;
      }
      case 'participant_joined': {
        if (this.#rooms.has(room)) return;
        const participantMetadata = event.participant?.metadata ?? '';
        const roomMetadata = event.room?.metadata ?? '';
        const layers = {
          defaults: this.#gateway.options.recording.defaults,
          room: roomRecordingOptions(roomMetadata),
          participant: participantRecordingOptions(participantMetadata),
        };
        if (!resolveRecordingOptions(layers).requested) return;
        // The agent's policy may turn it off: a quiet no-op here rather than a failed start.
        const named = namedAgentIdentities({ roomMetadata, room: layers.room, participant: layers.participant });
        const { options } = resolveRecordingOptions({ ...layers, agent: await this.#agentPolicy(agentPolicyCandidates(roomMetadata, named)) });
        if (!options.enabled) return;
        await this.startRoomRecording({
          room,
          trigger: 'webhook',
          participantMetadata,
          ...(event.room?.sid ? { knownRoom: { sid: event.room.sid, metadata: roomMetadata } } : {}),
        });
        return;
      }
      case 'room_finished': {
        if (this.#rooms.has(room)) await this.finish(room);
        return;
      }
      default:
        return;
    }
  }
}
