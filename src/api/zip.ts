/**
 * A store-only (no compression) ZIP writer for streaming a call's bundle. Store-only because the bundle
 * is mostly PCM WAV, which deflate barely shrinks, and because without compression every size is known
 * before the first byte: the response has an exact Content-Length and goes out with backpressure, entry by
 * entry, never built in memory. Each entry's CRC-32 is computed while it streams and written in a data
 * descriptor after it (general-purpose flag bit 3). No ZIP64: the whole archive must stay under 4 GiB.
 * Format: PKWARE APPNOTE 6.3.x, sections 4.3.7 (local header), 4.3.9 (data descriptor), 4.3.12 (central
 * directory header), 4.3.16 (end of central directory).
 */
import { crc32 } from 'node:zlib';
import { CallvaultError, ErrorCode } from '../errors/index.js';

export interface ZipEntry {
  /** Path inside the archive (UTF-8, forward slashes). */
  name: string;
  /** Exact byte length of `data`. */
  size: number;
  data: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

const LOCAL_HEADER = 30;
const DESCRIPTOR = 16;
const CENTRAL_HEADER = 46;
const END_OF_CENTRAL = 22;
const FLAG_DESCRIPTOR_UTF8 = 0x0008 | 0x0800;
const VERSION = 20;
export const MAX_ZIP_BYTES = 0xffffffff;

/** The archive's exact size for these entries. */
export function zipSize(entries: readonly Pick<ZipEntry, 'name' | 'size'>[]): number {
  let total = END_OF_CENTRAL;
  for (const e of entries) {
    const name = Buffer.byteLength(e.name, 'utf8');
    total += LOCAL_HEADER + name + e.size + DESCRIPTOR + CENTRAL_HEADER + name;
  }
  return total;
}

function dosTime(date: Date): { time: number; date: number } {
  const year = Math.max(1980, date.getUTCFullYear());
  return {
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | Math.floor(date.getUTCSeconds() / 2),
    date: ((year - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
  };
}

/** Yields the archive's bytes; throws CONTAINER_INVALID if an entry's data is not exactly its declared size. */
export async function* zipStream(entries: readonly ZipEntry[], modified: Date): AsyncGenerator<Uint8Array> {
  if (zipSize(entries) > MAX_ZIP_BYTES) {
    throw new CallvaultError(ErrorCode.Conflict, 'the bundle would be over 4 GiB', { details: { size: zipSize(entries) } });
  }
  const { time, date } = dosTime(modified);
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const local = Buffer.alloc(LOCAL_HEADER);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION, 4);
    local.writeUInt16LE(FLAG_DESCRIPTOR_UTF8, 6);
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    // CRC and sizes are 0 here and follow the data in the descriptor.
    local.writeUInt16LE(name.length, 26);
    yield local;
    yield name;
    let crc = 0;
    let written = 0;
    for await (const chunk of entry.data()) {
      if (chunk.length === 0) continue;
      crc = crc32(chunk, crc);
      written += chunk.length;
      yield chunk;
    }
    if (written !== entry.size) {
      throw new CallvaultError(ErrorCode.ContainerInvalid, 'a bundle entry was not its declared size', { details: { name: entry.name, size: entry.size, written } });
    }
    const descriptor = Buffer.alloc(DESCRIPTOR);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc >>> 0, 4);
    descriptor.writeUInt32LE(written, 8);
    descriptor.writeUInt32LE(written, 12);
    yield descriptor;
    const header = Buffer.alloc(CENTRAL_HEADER);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(VERSION, 4);
    header.writeUInt16LE(VERSION, 6);
    header.writeUInt16LE(FLAG_DESCRIPTOR_UTF8, 8);
    header.writeUInt16LE(0, 10);
    header.writeUInt16LE(time, 12);
    header.writeUInt16LE(date, 14);
    header.writeUInt32LE(crc >>> 0, 16);
    header.writeUInt32LE(written, 20);
    header.writeUInt32LE(written, 24);
    header.writeUInt16LE(name.length, 28);
    header.writeUInt32LE(offset, 42);
    central.push(header, name);
    offset += LOCAL_HEADER + name.length + written + DESCRIPTOR;
  }
  const directory = Buffer.concat(central);
  yield directory;
  const end = Buffer.alloc(END_OF_CENTRAL);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  yield end;
}
