/**
 * What the hidden participant keeps of a room besides its audio: the room's transcription text streams
 * (topic `lk.transcription`, as LiveKit Agents publish them) as transcript entries, and participant / track
 * events as session events. Both go to the same store as `POST /calls/{callId}/transcript` and `/events`.
 *
 * LiveKit Agents publish a segment either as one stream per update, the last with `lk.transcription_final`
 * `"true"` (transcribed user speech), or as one delta stream whose end is the segment's end (the agent's own
 * speech; agents-js never marks it final, the Python agents mark it in the stream's trailer, which rtc-node
 * does not expose). So: a final stream stores its text at once and later streams of its segment are ignored;
 * a segment that came as exactly one complete non-final stream is stored when the recording ends; any other
 * non-final text (interim updates whose final never came) is not stored.
 */
import { z } from 'zod';
import type { ArtifactsRepository, CallEventInput, JsonObject, TranscriptChannel, TranscriptEntryInput } from '../../db/index.js';
import { toCallvaultError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';

export const TOPIC_TRANSCRIPTION = 'lk.transcription';
export const ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID = 'lk.segment_id';
export const ATTRIBUTE_TRANSCRIPTION_TRACK_ID = 'lk.transcribed_track_id';
export const ATTRIBUTE_TRANSCRIPTION_FINAL = 'lk.transcription_final';
/** How long finish() waits for streams still being read. */
const FINISH_READ_WAIT_MS = 2000;
/** The transcript route's limit on one entry's text. */
export const MAX_SEGMENT_CHARS = 100_000;

const TranscriptionAttributesSchema = z.looseObject({
  [ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID]: z.string().min(1).max(256).optional(),
  [ATTRIBUTE_TRANSCRIPTION_TRACK_ID]: z.string().min(1).max(256).optional(),
  [ATTRIBUTE_TRANSCRIPTION_FINAL]: z.string().optional(),
});

export type RoomEventType =
  | 'participant_joined'
  | 'participant_left'
  | 'track_published'
  | 'track_unpublished'
  | 'track_muted'
  | 'track_unmuted';

/** One incoming text stream, as rtc-node hands it over. */
export interface IncomingTextStream {
  info: { streamId: string; attributes?: Record<string, string> | undefined };
  /** The identity rtc-node names as the stream's sender. */
  senderIdentity: string;
  readAll(): Promise<string>;
}

interface Segment {
  channel: TranscriptChannel;
  /**
   * Gateway wall time (µs since the epoch) when its first stream arrived: the entry's timestamp. Strictly
   * increasing in arrival order (a segment arriving in the same millisecond as the one before is placed 1 µs
   * after it), so the transcript's time order is the order the segments began.
   */
  firstAtMicros: number;
  streams: number;
  /** The text of its last complete non-final stream. */
  text: string | null;
  stored: boolean;
}

export interface RoomArtifactsInit {
  artifacts: ArtifactsRepository;
  /** The call's row id. */
  callId: string;
  room: string;
  /** Wall time (ms) of the recording's position 0. */
  originMs: number;
  now: () => number;
  logger: Logger;
  /** caller or bot for a stream: by the track it transcribes when it names one the room knows, else by its sender. */
  channelOf: (senderIdentity: string, transcribedTrackSid: string | undefined) => TranscriptChannel;
}

export class RoomArtifacts {
  readonly #init: RoomArtifactsInit;
  readonly #segments = new Map<string, Segment>();
  /** Writes run one after the other, so the store sees them in the order they happened. */
  #writes: Promise<void> = Promise.resolve();
  #reads = new Set<Promise<void>>();
  #finished = false;
  #lastMicros = 0;

  constructor(init: RoomArtifactsInit) {
    this.#init = init;
  }

  #write(what: string, run: () => Promise<unknown>): void {
    const { logger, room } = this.#init;
    this.#writes = this.#writes.then(run).then(
      () => undefined,
      (err: unknown) => {
        const error = toCallvaultError(err);
        logger.warn({ room, what, code: error.code, err: error }, 'livekit room artifact not stored');
      },
    );
  }

  /** A session event at `at` (wall ms, now by default), placed on the media timeline. */
  event(type: RoomEventType, data: JsonObject, at: number = this.#init.now()): void {
    if (this.#finished) return;
    const event: CallEventInput = {
      timestamp: new Date(at).toISOString(),
      type,
      mediaMs: Math.max(0, at - this.#init.originMs),
      data,
    };
    this.#write('event', () => this.#init.artifacts.addEvents(this.#init.callId, [event]));
  }

  /** Reads one `lk.transcription` stream to its end and keeps what it says of its segment. */
  textStream(stream: IncomingTextStream): void {
    if (this.#finished) return;
    const { logger, room, now, channelOf } = this.#init;
    const arrivedAt = now();
    const parsed = TranscriptionAttributesSchema.safeParse(stream.info.attributes ?? {});
    if (!parsed.success) {
      logger.warn({ room, sender: stream.senderIdentity, issues: parsed.error.issues.map((i) => i.path.join('.')) }, 'livekit transcription stream attributes invalid');
      return;
    }
    const attributes = parsed.data;
    const id = `${stream.senderIdentity}/${attributes[ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID] ?? stream.info.streamId}`;
    const final = attributes[ATTRIBUTE_TRANSCRIPTION_FINAL] === 'true';
    let segment = this.#segments.get(id);
    if (!segment) {
      this.#lastMicros = Math.max(Math.round(arrivedAt * 1000), this.#lastMicros + 1);
      segment = {
        channel: channelOf(stream.senderIdentity, attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID]),
        firstAtMicros: this.#lastMicros,
        streams: 0,
        text: null,
        stored: false,
      };
      this.#segments.set(id, segment);
    }
    segment.streams += 1;
    const seg = segment;
    const read = stream
      .readAll()
      .then((text) => {
        if (seg.stored) return;
        if (final) this.#store(seg, text);
        else seg.text = text;
      })
      .catch((err: unknown) => {
        const error = toCallvaultError(err);
        logger.warn({ room, sender: stream.senderIdentity, code: error.code, err: error }, 'livekit transcription stream failed');
      })
      .finally(() => this.#reads.delete(read));
    this.#reads.add(read);
  }

  #store(segment: Segment, text: string): void {
    segment.stored = true;
    const trimmed = text.trim();
    if (trimmed.length === 0) return;
    const entry: TranscriptEntryInput = {
      timestamp: isoFromMicros(segment.firstAtMicros),
      channel: segment.channel,
      type: segment.channel === 'caller' ? 'input' : 'output',
      text: trimmed.slice(0, MAX_SEGMENT_CHARS),
      confidence: null,
      durationMs: null,
    };
    this.#write('transcript entry', () => this.#init.artifacts.addTranscriptEntries(this.#init.callId, [entry]));
  }

  /**
   * The recording ended: streams still being read are read to their end, segments that came as one complete
   * stream are stored, and every write has settled when this resolves. Later events and streams are ignored.
   */
  async finish(): Promise<void> {
    if (this.#finished) return this.#writes;
    // A stream the room's end cut off ends with an error (logged); one that hangs is not waited for.
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, FINISH_READ_WAIT_MS)));
    await Promise.race([Promise.all([...this.#reads]), limit]);
    clearTimeout(timer);
    this.#finished = true;
    for (const segment of this.#segments.values()) {
      if (!segment.stored && segment.streams === 1 && segment.text !== null) this.#store(segment, segment.text);
    }
    await this.#writes;
  }
}

/** ISO 8601 UTC with microseconds (PostgreSQL keeps them). */
function isoFromMicros(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const extra = String(micros - ms * 1000).padStart(3, '0');
  return new Date(ms).toISOString().replace(/Z$/, `${extra}Z`);
}
