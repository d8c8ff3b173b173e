import { CallvaultError, ErrorCode } from '../errors/index.js';
import {
  MAX_ANY_HEADER_LENGTH,
  MAX_SEGMENTS,
  TAG_LENGTH,
  assertDataKey,
  headerLengthFromPrefix,
  openSegment,
  parseHeader,
  type ContainerHeader,
} from './container.js';

/** Holds incoming chunks without concatenating them until bytes are taken out. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0; // bytes already taken from chunks[0]
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Copies out the first `n` bytes without removing them. */
  peek(n: number): Uint8Array {
    const out = new Uint8Array(Math.min(n, this.length));
    let filled = 0;
    let skip = this.head;
    for (const chunk of this.chunks) {
      if (filled === out.length) break;
      const part = chunk.subarray(skip, skip + (out.length - filled));
      out.set(part, filled);
      filled += part.length;
      skip = 0;
    }
    return out;
  }

  take(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first && first.length - this.head >= n) {
      // Inside one chunk (the common case: a segment within a 64 KiB read): a view, not a copy. Sources hand
      // over fresh buffers (file and S3 streams do), so the view stays valid.
      const view = first.subarray(this.head, this.head + n);
      this.head += n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      this.length -= n;
      return view;
    }
    const out = this.peek(n);
    let remaining = out.length;
    while (remaining > 0) {
      const first = this.chunks[0]!;
      const left = first.length - this.head;
      if (left <= remaining) {
        this.chunks.shift();
        this.head = 0;
        remaining -= left;
      } else {
        this.head += remaining;
        remaining = 0;
      }
    }
    this.length -= out.length;
    return out;
  }
}

function tampered(message: string, details?: Record<string, unknown>): CallvaultError {
  return new CallvaultError(ErrorCode.ContainerTampered, message, details ? { details } : {});
}

function truncated(message: string, details?: Record<string, unknown>): CallvaultError {
  return new CallvaultError(ErrorCode.ContainerTruncated, message, details ? { details } : {});
}

export type DataKeyResolver = (header: ContainerHeader) => Uint8Array | Promise<Uint8Array>;

/**
 * Decrypts a container as it streams in, yielding each segment's plaintext only after its tag verified.
 * Holds at most one segment (plus whatever the source hands over at once). A consumer has received
 * verified segments before a later failure is detected, so it must treat the output as void on error.
 *
 * Errors: CONTAINER_INVALID (not a container / bad header), CONTAINER_TRUNCATED (ended in the header,
 * exactly at a segment boundary before the final segment, or with fewer bytes than a tag),
 * CONTAINER_TAMPERED (any authentication failure, including data after the final segment, a wrong key,
 * and a cut inside a segment, which cannot be told apart from a forged final segment).
 */
export async function* decryptStream(
  source: AsyncIterable<Uint8Array>,
  resolveKey: DataKeyResolver,
): AsyncGenerator<Uint8Array> {
  const queue = new ByteQueue();
  const iterator = source[Symbol.asyncIterator]();
  let ended = false;
  const pull = async (): Promise<void> => {
    const next = await iterator.next();
    if (next.done) ended = true;
    else queue.push(next.value);
  };

  try {
    let headerLength: number | undefined;
    while ((headerLength = headerLengthFromPrefix(queue.peek(MAX_ANY_HEADER_LENGTH))) === undefined || queue.length < headerLength) {
      if (ended) throw truncated('recording ended inside its header', { received: queue.length });
      await pull();
    }
    const headerBytes = queue.take(headerLength);
    const { header } = parseHeader(headerBytes);
    const dataKey = await resolveKey(header);
    assertDataKey(dataKey);

    const fullSealed = header.segmentSize + TAG_LENGTH;
    let index = 0;
    for (;;) {
      // A full-size segment is non-final only if more bytes follow it, so read one byte past it first.
      while (!ended && queue.length <= fullSealed) await pull();
      if (index >= MAX_SEGMENTS) throw tampered('recording has more segments than the counter allows');

      if (queue.length > fullSealed) {
        const sealed = queue.take(fullSealed);
        const plain = openSegment(dataKey, headerBytes, header.noncePrefix, index, false, sealed);
        if (plain === undefined) {
          const asFinal = openSegment(dataKey, headerBytes, header.noncePrefix, index, true, sealed);
          throw asFinal === undefined
            ? tampered('segment failed authentication', { segment: index })
            : tampered('data follows the final segment', { segment: index });
        }
        index++;
        if (plain.length > 0) yield plain;
        continue;
      }

      const rest = queue.take(queue.length);
      if (rest.length < TAG_LENGTH) {
        throw truncated('recording ended before its final segment', { segment: index, trailingBytes: rest.length });
      }
      const plain = openSegment(dataKey, headerBytes, header.noncePrefix, index, true, rest);
      if (plain !== undefined) {
        if (plain.length > 0) yield plain;
        return;
      }
      if (rest.length === fullSealed && openSegment(dataKey, headerBytes, header.noncePrefix, index, false, rest)) {
        throw truncated('recording ended at a segment boundary before its final segment', { segment: index + 1 });
      }
      throw tampered('final segment failed authentication', { segment: index });
    }
  } finally {
    if (!ended) await iterator.return?.();
  }
}

/** A whole object held in memory (a call's transcript, events or metadata: version 2), verified and decrypted. */
export async function decryptObject(object: Uint8Array, resolveKey: DataKeyResolver): Promise<{ header: ContainerHeader; plaintext: Uint8Array }> {
  let header: ContainerHeader | undefined;
  const parts: Uint8Array[] = [];
  for await (const plain of decryptStream(
    (async function* () {
      yield object;
    })(),
    (h) => {
      header = h;
      return resolveKey(h);
    },
  )) {
    parts.push(plain);
  }
  if (!header) throw new CallvaultError(ErrorCode.Internal, 'decryption finished without a header');
  return { header, plaintext: new Uint8Array(Buffer.concat(parts)) };
}

/**
 * Plaintext length implied by the object size alone (every segment but the last is full).
 * Throws CONTAINER_INVALID when no valid container has that size.
 */
export function plaintextSize(header: ContainerHeader, headerLength: number, objectSize: number): number {
  return segmentLayout(header, headerLength, objectSize).plaintextSize;
}

function segmentLayout(
  header: ContainerHeader,
  headerLength: number,
  objectSize: number,
): { plaintextSize: number; segmentCount: number } {
  const body = objectSize - headerLength;
  if (!Number.isSafeInteger(objectSize) || body < TAG_LENGTH) {
    throw new CallvaultError(ErrorCode.ContainerInvalid, 'object is too small to hold a final segment', {
      details: { objectSize, headerLength },
    });
  }
  const fullSealed = header.segmentSize + TAG_LENGTH;
  const fullSegments = Math.floor((body - TAG_LENGTH) / fullSealed);
  const lastPlain = body - TAG_LENGTH - fullSegments * fullSealed;
  if (lastPlain > header.segmentSize || fullSegments + 1 > MAX_SEGMENTS) {
    throw new CallvaultError(ErrorCode.ContainerInvalid, 'object size does not match any segment layout', {
      details: { objectSize, headerLength, segmentSize: header.segmentSize },
    });
  }
  return { plaintextSize: fullSegments * header.segmentSize + lastPlain, segmentCount: fullSegments + 1 };
}

export interface CiphertextRange {
  firstSegment: number;
  lastSegment: number;
  /** Pass as `isLastSegmentFinal` to decryptSegmentRun. */
  lastSegmentIsFinal: boolean;
  /** Byte offsets into the object (suitable for an HTTP/S3 `Range: bytes=cipherStart-cipherEndInclusive`). */
  cipherStart: number;
  cipherEndInclusive: number;
  /** Plaintext length of the whole recording (for `Content-Range: bytes a-b/plaintextSize`). */
  plaintextSize: number;
  /** Bytes to drop from the start of the decrypted run. */
  skipBytes: number;
  /** Bytes to keep after skipping; the end is clamped to the recording's end, as HTTP does. */
  length: number;
  plainStart: number;
  plainEndInclusive: number;
}

/**
 * Which ciphertext bytes to fetch to serve a plaintext range. Throws RANGE_NOT_SATISFIABLE when the
 * range starts at or past the end of the plaintext (or is malformed), CONTAINER_INVALID for an
 * impossible object size.
 */
export function ciphertextRangeForPlaintext(
  header: ContainerHeader,
  headerLength: number,
  objectSize: number,
  plainStart: number,
  plainEndInclusive: number,
): CiphertextRange {
  const { plaintextSize: total, segmentCount } = segmentLayout(header, headerLength, objectSize);
  if (!Number.isSafeInteger(plainStart) || !Number.isSafeInteger(plainEndInclusive) || plainStart < 0 || plainEndInclusive < plainStart || plainStart >= total) {
    throw new CallvaultError(ErrorCode.RangeNotSatisfiable, 'requested range is outside the recording', {
      details: { plainStart, plainEndInclusive, plaintextSize: total },
    });
  }
  const end = Math.min(plainEndInclusive, total - 1);
  const span = segmentSpan(header, headerLength, plainStart, end);
  const { firstSegment, lastSegment } = span;
  return {
    firstSegment,
    lastSegment,
    lastSegmentIsFinal: lastSegment === segmentCount - 1,
    cipherStart: span.cipherStart,
    // The final segment may be short: the object ends before a full segment would.
    cipherEndInclusive: Math.min(span.cipherEndInclusive + 1, objectSize) - 1,
    plaintextSize: total,
    skipBytes: plainStart - firstSegment * header.segmentSize,
    length: end - plainStart + 1,
    plainStart,
    plainEndInclusive: end,
  };
}

/**
 * The segments holding plaintext bytes plainStart..plainEndInclusive, and where they sit in the object
 * assuming every one of them is full (true for all but a final segment).
 */
export function segmentSpan(
  header: ContainerHeader,
  headerLength: number,
  plainStart: number,
  plainEndInclusive: number,
): { firstSegment: number; lastSegment: number; cipherStart: number; cipherEndInclusive: number } {
  const fullSealed = header.segmentSize + TAG_LENGTH;
  const firstSegment = Math.floor(plainStart / header.segmentSize);
  const lastSegment = Math.floor(plainEndInclusive / header.segmentSize);
  return {
    firstSegment,
    lastSegment,
    cipherStart: headerLength + firstSegment * fullSealed,
    cipherEndInclusive: headerLength + (lastSegment + 1) * fullSealed - 1,
  };
}

/**
 * Decrypts a contiguous run of sealed segments starting at `firstSegment` (as fetched for a
 * CiphertextRange). Every segment but the run's last must be full; the last is authenticated as the
 * recording's final segment when `isLastSegmentFinal`. Throws CONTAINER_TAMPERED on any authentication
 * failure and CONTAINER_INVALID when the run's length cannot be split into segments.
 */
export function decryptSegmentRun(
  header: ContainerHeader,
  headerBytes: Uint8Array,
  dataKey: Uint8Array,
  firstSegment: number,
  ciphertext: Uint8Array,
  isLastSegmentFinal: boolean,
): Uint8Array {
  assertDataKey(dataKey);
  const fullSealed = header.segmentSize + TAG_LENGTH;
  const parts: Uint8Array[] = [];
  let total = 0;
  let offset = 0;
  let index = firstSegment;
  while (offset < ciphertext.length) {
    const remaining = ciphertext.length - offset;
    const isLast = remaining <= fullSealed;
    const final = isLast && isLastSegmentFinal;
    if (isLast && ((!final && remaining !== fullSealed) || remaining < TAG_LENGTH)) {
      throw new CallvaultError(ErrorCode.ContainerInvalid, 'ciphertext run does not end on a segment boundary', {
        details: { firstSegment, length: ciphertext.length },
      });
    }
    const sealed = ciphertext.subarray(offset, offset + Math.min(remaining, fullSealed));
    const plain = openSegment(dataKey, headerBytes, header.noncePrefix, index, final, sealed);
    if (plain === undefined) throw tampered('segment failed authentication', { segment: index });
    parts.push(plain);
    total += plain.length;
    offset += sealed.length;
    index++;
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
