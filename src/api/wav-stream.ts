/**
 * Serving an encrypted recording as a WAV file over HTTP: byte ranges of the WAV are mapped onto the
 * container's segments, only those segments are read (from S3, or from the spool for a live recording),
 * each is decrypted and verified on its own, and the bytes go out at the pace the client reads them.
 */
import type { Readable } from 'node:stream';
import type { HttpResponse } from 'uWebSockets.js';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { MAX_WAV_DATA_BYTES, WAV_HEADER_LENGTH, wavHeader } from '../audio/wav.js';
import {
  TAG_LENGTH,
  ciphertextRangeForPlaintext,
  segmentSpan,
  decryptSegmentRun,
  plaintextSize,
  type ContainerHeader,
} from '../crypto/index.js';
import { statusLine } from '../http/http.js';

/** The parsed header of a container and its exact bytes (every segment's AAD). */
export interface ContainerPrefix {
  header: ContainerHeader;
  headerLength: number;
  headerBytes: Uint8Array;
}

/**
 * Which segments of a container can be served. A completed object ends with its final segment; a live
 * spool file is served up to its last complete (non-final) segment.
 */
export interface SegmentLayout extends ContainerPrefix {
  /** Bytes of the object (completed) or of the spool file that hold complete segments (live). */
  objectSize: number;
  complete: boolean;
  plaintextSize: number;
}

export function completedLayout(prefix: ContainerPrefix, objectSize: number): SegmentLayout {
  return { ...prefix, objectSize, complete: true, plaintextSize: plaintextSize(prefix.header, prefix.headerLength, objectSize) };
}

/** A spool file still being appended to: only whole sealed segments count, a half-written one is ignored. */
export function liveLayout(prefix: ContainerPrefix, fileSize: number): SegmentLayout {
  const fullSealed = prefix.header.segmentSize + TAG_LENGTH;
  const segments = Math.max(0, Math.floor((fileSize - prefix.headerLength) / fullSealed));
  return {
    ...prefix,
    objectSize: prefix.headerLength + segments * fullSealed,
    complete: false,
    plaintextSize: segments * prefix.header.segmentSize,
  };
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * The single range of a `Range` header over a representation of `total` bytes. `null` means serve the whole
 * thing: no header, a syntax this server ignores (RFC 9110 lets a server ignore Range), or several ranges.
 * Throws RANGE_NOT_SATISFIABLE when the range starts past the end.
 */
export function parseRange(value: string | undefined, total: number): ByteRange | null {
  if (value === undefined) return null;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (!match) return null;
  const [, first = '', last = ''] = match;
  const unsatisfiable = () =>
    new CallvaultError(ErrorCode.RangeNotSatisfiable, 'requested range is outside the recording', { details: { size: total } });
  // Digits beyond what a safe integer holds are still numbers (RFC 9110): a last position past the end is the
  // end, a suffix longer than the file is the whole file, a first position past the end is unsatisfiable.
  const big = (digits: string): number => {
    const n = Number(digits);
    return Number.isSafeInteger(n) ? n : Number.MAX_SAFE_INTEGER;
  };
  if (first === '') {
    if (last === '') return null;
    const suffix = big(last);
    if (suffix === 0 || total === 0) throw unsatisfiable();
    return { start: Math.max(0, total - suffix), end: total - 1 };
  }
  const start = big(first);
  const end = last === '' ? Number.MAX_SAFE_INTEGER : big(last);
  if (end < start) return null;
  if (start >= total) throw unsatisfiable();
  return { start, end: Math.min(end, total - 1) };
}

/** What to send for one request: which bytes of the served file, and which ciphertext holds the audio among them. */
export interface MediaPlan {
  contentType: string;
  /** File name extension for Content-Disposition. */
  extension: string;
  /** Bytes of the whole served file: the synthesized header (if any) plus the plaintext. */
  size: number;
  range: ByteRange;
  partial: boolean;
  /** The part of the synthesized header inside the range (empty when the audio is served as stored). */
  headerSlice: Uint8Array;
  pcm: PcmPlan | null;
}

/** Kept for callers that only know WAV: `wavSize` is the served size. */
export interface WavPlan extends MediaPlan {
  wavSize: number;
}

export interface PcmPlan {
  firstSegment: number;
  lastSegment: number;
  lastSegmentIsFinal: boolean;
  cipherStart: number;
  cipherEndInclusive: number;
  /** Plaintext offsets (inclusive) to keep. */
  plainStart: number;
  plainEnd: number;
}

/** The served file's own header and type: a WAV header before PCM, nothing before audio that is already a file (MP3). */
function mediaFraming(layout: SegmentLayout): { header: Uint8Array; contentType: string; extension: string } {
  if (layout.header.sampleFormat === 'mp3') return { header: new Uint8Array(0), contentType: 'audio/mpeg', extension: 'mp3' };
  if (layout.plaintextSize > MAX_WAV_DATA_BYTES) {
    throw new CallvaultError(ErrorCode.Conflict, 'recording is too long for a single WAV file', {
      details: { plaintextSize: layout.plaintextSize },
    });
  }
  if (layout.header.channels === 0) throw new CallvaultError(ErrorCode.ContainerInvalid, 'PCM recording without channels');
  const header = wavHeader({ sampleRate: layout.header.sampleRate, channels: layout.header.channels, dataBytes: layout.plaintextSize });
  return { header, contentType: 'audio/wav', extension: 'wav' };
}

export function planMedia(layout: SegmentLayout, rangeHeader: string | undefined): MediaPlan {
  const { header, contentType, extension } = mediaFraming(layout);
  const headerLength = header.length;
  const size = headerLength + layout.plaintextSize;
  const requested = parseRange(rangeHeader, size);
  const range = requested ?? { start: 0, end: size - 1 };
  const headerSlice = range.start < headerLength ? header.subarray(range.start, Math.min(range.end, headerLength - 1) + 1) : new Uint8Array(0);
  let pcm: PcmPlan | null = null;
  // An empty file has range end -1: no audio to read.
  if (range.end >= headerLength && range.end >= range.start) {
    const plainStart = Math.max(range.start, headerLength) - headerLength;
    const plainEnd = range.end - headerLength;
    pcm = layout.complete ? completedPcm(layout, plainStart, plainEnd) : livePcm(layout, plainStart, plainEnd);
  }
  return { contentType, extension, size, range, partial: requested !== null, headerSlice, pcm };
}

export function planWav(layout: SegmentLayout, rangeHeader: string | undefined): WavPlan {
  const plan = planMedia(layout, rangeHeader);
  return { ...plan, wavSize: plan.size };
}

function completedPcm(layout: SegmentLayout, plainStart: number, plainEnd: number): PcmPlan {
  const r = ciphertextRangeForPlaintext(layout.header, layout.headerLength, layout.objectSize, plainStart, plainEnd);
  return {
    firstSegment: r.firstSegment,
    lastSegment: r.lastSegment,
    lastSegmentIsFinal: r.lastSegmentIsFinal,
    cipherStart: r.cipherStart,
    cipherEndInclusive: r.cipherEndInclusive,
    plainStart: r.plainStart,
    plainEnd: r.plainEndInclusive,
  };
}

function livePcm(layout: SegmentLayout, plainStart: number, plainEnd: number): PcmPlan {
  // The live file has no final segment yet: everything served is full and sealed as non-final.
  return { ...segmentSpan(layout.header, layout.headerLength, plainStart, plainEnd), lastSegmentIsFinal: false, plainStart, plainEnd };
}

/**
 * Decrypts the planned segments from `ciphertext` (exactly bytes cipherStart..cipherEndInclusive), one
 * segment at a time, yielding only verified plaintext inside the plan's range.
 */
export async function* decryptPlannedPcm(
  layout: SegmentLayout,
  plan: PcmPlan,
  dataKey: Uint8Array,
  ciphertext: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const size = layout.header.segmentSize;
  const fullSealed = size + TAG_LENGTH;
  const totalCipher = plan.cipherEndInclusive - plan.cipherStart + 1;
  const sealedLength = (segment: number): number =>
    segment < plan.lastSegment ? fullSealed : totalCipher - (plan.lastSegment - plan.firstSegment) * fullSealed;

  let segment = plan.firstSegment;
  let buffer = new Uint8Array(sealedLength(segment));
  let filled = 0;
  const emit = function* (): Generator<Uint8Array> {
    const final = segment === plan.lastSegment && plan.lastSegmentIsFinal;
    const plain = decryptSegmentRun(layout.header, layout.headerBytes, dataKey, segment, buffer, final);
    const segmentStart = segment * size;
    const from = Math.max(plan.plainStart - segmentStart, 0);
    const to = Math.min(plan.plainEnd - segmentStart + 1, plain.length);
    if (to > from) yield plain.subarray(from, to);
  };

  for await (const chunk of ciphertext) {
    let offset = 0;
    while (offset < chunk.length) {
      if (segment > plan.lastSegment) {
        throw new CallvaultError(ErrorCode.ContainerInvalid, 'storage returned more bytes than the requested range');
      }
      const n = Math.min(buffer.length - filled, chunk.length - offset);
      buffer.set(chunk.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === buffer.length) {
        yield* emit();
        segment++;
        if (segment <= plan.lastSegment) buffer = new Uint8Array(sealedLength(segment));
        filled = 0;
      }
    }
  }
  if (segment <= plan.lastSegment) {
    throw new CallvaultError(ErrorCode.ContainerTruncated, 'storage returned fewer bytes than the requested range', {
      details: { segment },
    });
  }
}

/** The client went away; whatever was being sent stops. */
export class ClientGone extends Error {
  constructor() {
    super('client aborted the response');
  }
}

/**
 * Writes a body of known size with uWS backpressure: `write` resolves only once uWS took the whole chunk,
 * waiting on `onWritable` when the socket is full, so nothing piles up in memory for a slow client.
 */
export class BackpressuredBody {
  readonly #res: HttpResponse;
  readonly #total: number;
  readonly #signal: AbortSignal;
  #sent = 0;

  constructor(res: HttpResponse, total: number, signal: AbortSignal) {
    this.#res = res;
    this.#total = total;
    this.#signal = signal;
  }

  get sent(): number {
    return this.#sent;
  }

  begin(status: number, headers: Record<string, string>): void {
    if (this.#signal.aborted) throw new ClientGone();
    this.#res.cork(() => {
      this.#res.writeStatus(statusLine(status));
      for (const [name, value] of Object.entries(headers)) this.#res.writeHeader(name, value);
    });
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) return;
    if (this.#signal.aborted) throw new ClientGone();
    const res = this.#res;
    const startOffset = res.getWriteOffset();
    let ok = false;
    res.cork(() => {
      [ok] = res.tryEnd(chunk, this.#total);
    });
    if (ok) {
      this.#sent += chunk.length;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new ClientGone());
      this.#signal.addEventListener('abort', onAbort, { once: true });
      res.onWritable((offset) => {
        // uWS took part of the chunk before the socket filled; resend only the rest.
        const [retried, done] = res.tryEnd(chunk.subarray(offset - startOffset), this.#total);
        if (retried || done) {
          this.#signal.removeEventListener('abort', onAbort);
          resolve();
        }
        return retried;
      });
    });
    this.#sent += chunk.length;
  }

  /** Drops the connection: the client sees a body shorter than Content-Length, never a silently wrong file. */
  abortConnection(): void {
    if (!this.#signal.aborted) this.#res.close();
  }
}

/** Reads a Node stream to the end into one buffer; only for small reads such as a container header. */
export async function readAll(stream: Readable | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Which channel of a stereo recording a track is: the caller left (0), the bot / agent right (1). */
export type TrackName = 'caller' | 'bot';
export const TRACK_CHANNEL: Readonly<Record<TrackName, 0 | 1>> = { caller: 0, bot: 1 };

/** What to send for one request of a single track: a mono WAV cut out of the stereo plaintext. */
export interface TrackPlan {
  contentType: 'audio/wav';
  extension: 'wav';
  /** Bytes of the served mono file: its header plus half the stereo plaintext. */
  size: number;
  range: ByteRange;
  partial: boolean;
  headerSlice: Uint8Array;
  /** The stereo frames holding the requested mono bytes (whole frames), or null when only header bytes are asked. */
  pcm: PcmPlan | null;
  channel: 0 | 1;
  /** Mono bytes to drop from the first deinterleaved sample (0 or 1: the range starts mid-sample). */
  skip: number;
  /** Mono bytes to send after the header slice. */
  take: number;
}

/**
 * Plans one track of a 16-bit stereo PCM recording as a mono 16-bit WAV at the same rate, sample-aligned
 * with the stereo file: mono sample i is channel `channel` of stereo frame i. A byte range of the mono file
 * maps onto the whole stereo frames that hold it, so only those segments are read and decrypted.
 */
export function planTrack(layout: SegmentLayout, channel: 0 | 1, rangeHeader: string | undefined): TrackPlan {
  const { header: container } = layout;
  if (container.sampleFormat === 'mp3' || container.channels !== 2) {
    throw new CallvaultError(ErrorCode.TracksNotSeparate, 'the recording mixed its tracks into one channel; they were not kept apart', {
      details: { channels: container.channels, sampleFormat: container.sampleFormat },
    });
  }
  const frames = Math.floor(layout.plaintextSize / 4);
  const monoBytes = frames * 2;
  if (monoBytes > MAX_WAV_DATA_BYTES) {
    throw new CallvaultError(ErrorCode.Conflict, 'recording is too long for a single WAV file', { details: { plaintextSize: layout.plaintextSize } });
  }
  const header = wavHeader({ sampleRate: container.sampleRate, channels: 1, dataBytes: monoBytes });
  const size = header.length + monoBytes;
  const requested = parseRange(rangeHeader, size);
  const range = requested ?? { start: 0, end: size - 1 };
  const headerSlice = range.start < header.length ? header.subarray(range.start, Math.min(range.end, header.length - 1) + 1) : new Uint8Array(0);
  let pcm: PcmPlan | null = null;
  let skip = 0;
  let take = 0;
  if (range.end >= header.length && range.end >= range.start) {
    const monoStart = Math.max(range.start, header.length) - header.length;
    const monoEnd = range.end - header.length;
    const firstFrame = Math.floor(monoStart / 2);
    const lastFrame = Math.floor(monoEnd / 2);
    skip = monoStart - firstFrame * 2;
    take = monoEnd - monoStart + 1;
    const plainStart = firstFrame * 4;
    const plainEnd = lastFrame * 4 + 3;
    pcm = layout.complete ? completedPcm(layout, plainStart, plainEnd) : livePcm(layout, plainStart, plainEnd);
  }
  return { contentType: 'audio/wav', extension: 'wav', size, range, partial: requested !== null, headerSlice, pcm, channel, skip, take };
}

/**
 * Deinterleaves 16-bit stereo plaintext (starting on a frame boundary, in chunks of any length) into one
 * channel, streaming: only a partial frame (under 4 bytes) is carried from one chunk to the next.
 */
export async function* deinterleaveChannel(stereo: AsyncIterable<Uint8Array>, channel: 0 | 1, skip: number, take: number): AsyncGenerator<Uint8Array> {
  let carry = new Uint8Array(0);
  let toSkip = skip;
  let left = take;
  for await (const chunk of stereo) {
    if (left <= 0) break;
    const bytes = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
    const frames = Math.floor(bytes.length / 4);
    const out = new Uint8Array(frames * 2);
    for (let f = 0, i = channel * 2; f < frames; f++, i += 4) {
      out[f * 2] = bytes[i]!;
      out[f * 2 + 1] = bytes[i + 1]!;
    }
    carry = bytes.slice(frames * 4);
    let piece = out;
    if (toSkip > 0) {
      const n = Math.min(toSkip, piece.length);
      piece = piece.subarray(n);
      toSkip -= n;
    }
    if (piece.length > left) piece = piece.subarray(0, left);
    left -= piece.length;
    if (piece.length > 0) yield piece;
  }
}
