import { randomBytes } from 'node:crypto';
import type { RemoteParticipant, RemoteTrack, RemoteTrackPublication, Room, TrackPublication, Participant } from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';
import { USER_ID } from '../../config/index.js';
import type { ArtifactsRepository, JsonObject, TranscriptChannel } from '../../db/index.js';
import type { Logger } from '../../log/index.js';
import { RoomArtifacts, TOPIC_TRANSCRIPTION, type RoomEventType } from './room-artifacts.js';
import { parseMetadata } from './room-options.js';
import type { LivekitRoomSession, RoomTrackInput } from './room-session.js';

/** rtc-node's AudioStream rate and layout; the pipeline resamples to the recording's rate. */
export const PARTICIPANT_SAMPLE_RATE = 48_000;
export const GATEWAY_IDENTITY_PREFIX = 'callvault-recorder-';
const TOKEN_TTL = '6h';

export interface LivekitConnection {
  url: string;
  apiKey: string;
  apiSecret: string;
}

export interface RoomParticipantInit {
  connection: LivekitConnection;
  session: LivekitRoomSession;
  /** Identities recorded as the agent, in addition to participants LiveKit marks as agents. */
  agentIdentities: ReadonlySet<string>;
  logger: Logger;
  now: () => number;
  /** Where the room's transcription streams and participant events are stored (the gateway's repository). */
  artifacts: ArtifactsRepository;
  /** The last participant left or the room went away: the recording should finish. */
  onRoomEmpty: () => void;
}

/** A token for a participant that nobody sees and that never publishes: it only listens. */
/** The user a (non-agent) participant names: its `userId` attribute, else `userId` in its JSON metadata. */
export function participantUserId(participant: { attributes?: Record<string, string> | undefined; metadata?: string | undefined }): string | undefined {
  const attribute = participant.attributes?.['userId'];
  if (attribute !== undefined && USER_ID.test(attribute)) return attribute;
  const meta = parseMetadata(participant.metadata)?.['userId'];
  return typeof meta === 'string' && USER_ID.test(meta) ? meta : undefined;
}

export async function mintRecorderToken(connection: LivekitConnection, room: string, identity: string): Promise<string> {
  const token = new AccessToken(connection.apiKey, connection.apiSecret, { identity, ttl: TOKEN_TTL });
  token.addGrant({ room, roomJoin: true, hidden: true, canPublish: false, canPublishData: false, canSubscribe: true });
  return token.toJwt();
}

/**
 * The gateway inside a LiveKit room: a hidden, subscribe-only participant that reads every audio track
 * at 48 kHz mono and feeds the room session. rtc-node is loaded on first use, so a gateway without
 * LiveKit never loads its native library.
 */
export class RoomParticipant {
  readonly identity: string;
  readonly #init: RoomParticipantInit;
  readonly #room: Room;
  readonly #inputs = new Map<string, RoomTrackInput>();
  readonly #streams = new Map<string, unknown>();
  /** The role of every track the room published while we were in it, by track sid. */
  readonly #trackRoles = new Map<string, 'agent' | 'caller'>();
  readonly #artifacts: RoomArtifacts;
  /** rtc-node, once loaded (join loads it before anything can arrive). */
  #rtc: typeof import('@livekit/rtc-node') | undefined;
  #seenParticipant = false;
  #left = false;

  private constructor(init: RoomParticipantInit, room: Room, identity: string) {
    this.#init = init;
    this.#room = room;
    this.identity = identity;
    this.#artifacts = new RoomArtifacts({
      artifacts: init.artifacts,
      callId: init.session.call.dbId,
      room: init.session.room,
      originMs: init.session.originMs,
      now: init.now,
      logger: init.logger,
      channelOf: (sender, trackSid) => this.#channelOf(sender, trackSid),
    });
  }

  static async join(init: RoomParticipantInit): Promise<RoomParticipant> {
    const rtc = await import('@livekit/rtc-node');
    const identity = `${GATEWAY_IDENTITY_PREFIX}${randomBytes(6).toString('hex')}`;
    const token = await mintRecorderToken(init.connection, init.session.room, identity);
    const room = new rtc.Room();
    const participant = new RoomParticipant(init, room, identity);
    participant.#listen(rtc);
    await room.connect(init.connection.url, token, { autoSubscribe: true, dynacast: false });
    participant.#seenParticipant = [...room.remoteParticipants.values()].some((p) => participant.#counts(p));
    // Who was already there when the recording joined: events at the join, marked as such.
    for (const present of room.remoteParticipants.values()) {
      if (!participant.#counts(present)) continue;
      participant.#event(rtc, 'participant_joined', present, { already_present: true });
      for (const publication of present.trackPublications.values()) {
        participant.#event(rtc, 'track_published', present, { already_present: true }, publication);
      }
    }
    return participant;
  }

  #counts(participant: Participant): boolean {
    return !participant.identity.startsWith(GATEWAY_IDENTITY_PREFIX);
  }

  #isAgent(rtc: typeof import('@livekit/rtc-node'), participant: Participant): boolean {
    return participant.kind === rtc.ParticipantKind.AGENT || this.#init.agentIdentities.has(participant.identity);
  }

  #roleOf(rtc: typeof import('@livekit/rtc-node'), participant: Participant): 'agent' | 'caller' {
    return this.#isAgent(rtc, participant) ? 'agent' : 'caller';
  }

  /**
   * A transcription stream is the bot's or the caller's by the track it transcribes (LiveKit Agents publish the
   * user's transcription themselves, naming the user's track), else by its sender, like the audio.
   */
  #channelOf(sender: string, trackSid: string | undefined): TranscriptChannel {
    const rtc = this.#rtc;
    let role = trackSid === undefined ? undefined : this.#trackRoles.get(trackSid);
    if (role === undefined && rtc) {
      const owner = [...this.#room.remoteParticipants.values()].find((p) => trackSid !== undefined && p.trackPublications.has(trackSid));
      const participant = owner ?? this.#room.remoteParticipants.get(sender);
      role = participant ? this.#roleOf(rtc, participant) : this.#init.agentIdentities.has(sender) ? 'agent' : 'caller';
    }
    return role === 'agent' ? 'bot' : 'caller';
  }

  /** A participant or track event of the room, stored with the call's session events. */
  #event(
    rtc: typeof import('@livekit/rtc-node'),
    type: RoomEventType,
    participant: Participant,
    extra: JsonObject = {},
    publication?: TrackPublication,
  ): void {
    if (!this.#counts(participant)) return;
    const role = this.#roleOf(rtc, participant);
    const data: JsonObject = { participant: participant.identity, role };
    if (publication) {
      if (publication.sid) {
        data['track'] = publication.sid;
        this.#trackRoles.set(publication.sid, role);
      }
      const kind = publication.kind === undefined ? undefined : rtc.TrackKind[publication.kind];
      const source = publication.source === undefined ? undefined : rtc.TrackSource[publication.source];
      if (kind) data['kind'] = kind.replace(/^KIND_/, '').toLowerCase();
      if (source) data['track_source'] = source.replace(/^SOURCE_/, '').toLowerCase();
    }
    this.#artifacts.event(type, { ...data, ...extra });
  }

  #listen(rtc: typeof import('@livekit/rtc-node')): void {
    const { RoomEvent, TrackKind, AudioStream } = rtc;
    const room = this.#room;
    const { session, logger, now } = this.#init;
    this.#rtc = rtc;

    room.registerTextStreamHandler(TOPIC_TRANSCRIPTION, (reader, sender) => {
      this.#artifacts.textStream({ info: reader.info, senderIdentity: sender.identity, readAll: () => reader.readAll() });
    });

    room.on(RoomEvent.TrackSubscribed, (track: RemoteTrack, publication: RemoteTrackPublication, participant: RemoteParticipant) => {
      if (track.kind !== TrackKind.KIND_AUDIO || session.closed) return;
      const agent = this.#isAgent(rtc, participant);
      const trackSid = publication.sid ?? track.sid ?? 'unknown';
      this.#trackRoles.set(trackSid, agent ? 'agent' : 'caller');
      // AudioStream plays out continuously (silence and concealment included) for as long as the track is
      // subscribed, so a wall-clock gap between frames is a stall on our side, never missing audio: only
      // mute and unsubscribe are discontinuities here.
      const input = session.openTrack({ participant: participant.identity, track: trackSid }, agent ? 'agent' : 'caller', PARTICIPANT_SAMPLE_RATE, {
        gapThresholdMs: Number.POSITIVE_INFINITY,
      });
      if (!agent) {
        const userId = participantUserId(participant);
        if (userId) session.tagUser(userId);
      }
      if (publication.muted) input.setMuted(true);
      this.#inputs.set(trackSid, input);
      logger.info({ room: session.room, participant: participant.identity, track: trackSid, role: input.role }, 'livekit track subscribed');
      const stream = new AudioStream(track, { sampleRate: PARTICIPANT_SAMPLE_RATE, numChannels: 1 });
      this.#streams.set(trackSid, stream);
      void (async () => {
        for await (const frame of stream) {
          input.push(Buffer.copyBytesFrom(frame.data), now());
        }
      })()
        .catch((err: unknown) => logger.error({ room: session.room, track: trackSid, err }, 'livekit audio stream failed'))
        .finally(() => {
          // A re-subscribe of the same track reopens the same input: an old stream ending late must not end it.
          if (this.#streams.get(trackSid) !== stream) return;
          this.#streams.delete(trackSid);
          input.end();
        });
    });

    const onMute = (muted: boolean) => (publication: TrackPublication, participant: Participant) => {
      const sid = publication.sid;
      if (sid) this.#inputs.get(sid)?.setMuted(muted);
      this.#event(rtc, muted ? 'track_muted' : 'track_unmuted', participant, {}, publication);
    };
    room.on(RoomEvent.TrackPublished, (publication: RemoteTrackPublication, participant: RemoteParticipant) => {
      this.#event(rtc, 'track_published', participant, {}, publication);
    });
    room.on(RoomEvent.TrackUnpublished, (publication: RemoteTrackPublication, participant: RemoteParticipant) => {
      this.#event(rtc, 'track_unpublished', participant, {}, publication);
    });
    room.on(RoomEvent.TrackMuted, onMute(true));
    room.on(RoomEvent.TrackUnmuted, onMute(false));
    room.on(RoomEvent.TrackUnsubscribed, (_track: RemoteTrack, publication: RemoteTrackPublication) => {
      if (publication.sid) this.#inputs.get(publication.sid)?.end();
    });
    room.on(RoomEvent.ParticipantConnected, (participant: RemoteParticipant) => {
      if (this.#counts(participant)) this.#seenParticipant = true;
      this.#event(rtc, 'participant_joined', participant);
    });
    room.on(RoomEvent.ParticipantDisconnected, (participant: RemoteParticipant) => {
      this.#event(rtc, 'participant_left', participant);
      const remaining = [...room.remoteParticipants.values()].filter((p) => this.#counts(p));
      if (this.#seenParticipant && remaining.length === 0) this.#init.onRoomEmpty();
    });
    room.on(RoomEvent.Disconnected, () => {
      if (!this.#left) this.#init.onRoomEmpty();
    });
  }

  async leave(): Promise<void> {
    if (this.#left) return;
    this.#left = true;
    for (const input of this.#inputs.values()) input.end();
    try {
      // Transcription streams still arriving are read first; then every artifact write has settled.
      await this.#artifacts.finish();
    } finally {
      await this.#room.disconnect();
    }
  }
}
