import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { WAV_HEADER_LENGTH, wavHeader } from '../audio/wav.js';
import type { ContainerHeader, SampleFormat } from './container.js';
import { decryptStream } from './decrypt.js';
import { deriveClientDataKeyFor } from './keys.js';

export interface DecryptToWavOptions {
  /** A file path, an http(s) URL (e.g. a presigned S3 URL), or the container's bytes as a stream. */
  input: string | AsyncIterable<Uint8Array>;
  /** Where the WAV goes; it appears only once the whole recording has verified. */
  output: string;
  /** The client key of a client-mode recording. */
  key?: string;
  /** An already unwrapped (server mode) or derived data key. */
  dataKey?: Uint8Array;
}

export interface DecryptToWavResult {
  /**
   * `mp3`: the output is the recording's MPEG audio exactly as stored, not a WAV (see below). `none`: not
   * audio (a version 2 object, e.g. a call's transcript): the output is its plaintext, of `contentType`.
   */
  sampleFormat: SampleFormat | 'none';
  /** Version 2 objects: the plaintext's media type, e.g. `application/json`. */
  contentType?: string;
  /** For mp3, as its first frame header declared (0 when unknown). */
  sampleRate: number;
  channels: 0 | 1 | 2;
  /** 0 for mp3: only a decoder could say. */
  durationSeconds: number;
  /** Size of the written file. */
  bytes: number;
  /** PCM bytes in the WAV's data chunk; for mp3, the MPEG audio bytes. */
  dataBytes: number;
}

async function* fetchBody(url: string): AsyncIterable<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (cause) {
    throw new CallvaultError(ErrorCode.StorageUnavailable, 'could not fetch the recording', { cause, retryable: true });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw response.status === 404
      ? new CallvaultError(ErrorCode.NotFound, 'recording URL returned 404')
      : new CallvaultError(ErrorCode.StorageUnavailable, `recording URL returned HTTP ${response.status}`, {
          retryable: response.status >= 500,
          details: { status: response.status },
        });
  }
  yield* response.body as unknown as AsyncIterable<Uint8Array>;
}

function openInput(input: DecryptToWavOptions['input']): AsyncIterable<Uint8Array> {
  if (typeof input !== 'string') return input;
  if (/^https?:\/\//i.test(input)) return fetchBody(input);
  return readFile(input);
}

async function* readFile(path: string): AsyncIterable<Uint8Array> {
  try {
    yield* createReadStream(path) as AsyncIterable<Uint8Array>;
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CallvaultError(missing ? ErrorCode.NotFound : ErrorCode.StorageUnavailable, missing ? 'recording file does not exist' : 'could not read the recording file', { cause });
  }
}

function keyResolver(options: DecryptToWavOptions): (header: ContainerHeader) => Uint8Array | Promise<Uint8Array> {
  const { key, dataKey } = options;
  if ((key === undefined) === (dataKey === undefined)) {
    throw new CallvaultError(ErrorCode.BadRequest, 'pass exactly one of a client key or a data key');
  }
  return (header) => {
    if (dataKey !== undefined) return dataKey;
    if (header.keyMode !== 'client') {
      throw new CallvaultError(
        ErrorCode.KeyUnknown,
        'this recording is protected by a server-managed key, not a client key; fetch it decrypted from the server or pass its data key',
        { details: { keyMode: header.keyMode, keyId: header.keyId } },
      );
    }
    // HKDF for a key, scrypt (with the header's parameters) for a passphrase.
    return deriveClientDataKeyFor(key!, header);
  };
}

/**
 * Decrypts a recording into a PCM16 WAV file. Streams: the recording is never held in memory. Output
 * goes to a temporary file beside `output` that is renamed over it only after the final segment
 * verified, so a truncated or tampered recording throws (CONTAINER_*) and leaves no WAV behind.
 *
 * A recording holding MP3 (sample format `mp3`, e.g. from ElevenLabs) is written as the MP3 it is, with no
 * WAV header: wrapping MPEG frames in a PCM WAV would make a file players misread, and decoding needs a
 * codec callvault does not carry. `sampleFormat: 'mp3'` in the result says so; name the output `.mp3`.
 */
export async function decryptRecordingToWav(options: DecryptToWavOptions): Promise<DecryptToWavResult> {
  const resolve = keyResolver(options);
  const temporary = join(dirname(options.output), `.${basename(options.output)}.${randomBytes(6).toString('hex')}.partial`);
  const file = await open(temporary, 'wx');
  let closed = false;
  try {
    let header: ContainerHeader | undefined;
    let dataBytes = 0;
    // Known before the first plaintext arrives: the resolver sees the header first.
    let dataOffset = WAV_HEADER_LENGTH;
    for await (const plain of decryptStream(openInput(options.input), (h) => {
      header = h;
      if (h.sampleFormat === 'mp3' || h.sampleFormat === 'none') dataOffset = 0;
      return resolve(h);
    })) {
      await file.write(plain, 0, plain.length, dataOffset + dataBytes);
      dataBytes += plain.length;
    }
    if (!header) throw new CallvaultError(ErrorCode.Internal, 'decryption finished without a header');
    if (header.sampleFormat === 'none') {
      await file.sync();
      await file.close();
      closed = true;
      await rename(temporary, options.output);
      return { sampleFormat: 'none', contentType: header.contentType ?? 'application/octet-stream', sampleRate: 0, channels: 0, durationSeconds: 0, bytes: dataBytes, dataBytes };
    }
    if (header.sampleFormat === 'mp3') {
      await file.sync();
      await file.close();
      closed = true;
      await rename(temporary, options.output);
      return { sampleFormat: 'mp3', sampleRate: header.sampleRate, channels: header.channels, durationSeconds: 0, bytes: dataBytes, dataBytes };
    }
    const frameBytes = 2 * header.channels;
    if (dataBytes % frameBytes !== 0) {
      throw new CallvaultError(ErrorCode.ContainerInvalid, 'recording does not hold whole PCM16 frames', {
        details: { dataBytes, channels: header.channels },
      });
    }
    if (header.channels === 0) throw new CallvaultError(ErrorCode.ContainerInvalid, 'PCM recording without channels');
    await file.write(wavHeader({ sampleRate: header.sampleRate, channels: header.channels, dataBytes }), 0, WAV_HEADER_LENGTH, 0);
    await file.sync();
    await file.close();
    closed = true;
    await rename(temporary, options.output);
    return {
      sampleFormat: 'pcm_s16le',
      sampleRate: header.sampleRate,
      channels: header.channels,
      durationSeconds: dataBytes / frameBytes / header.sampleRate,
      bytes: WAV_HEADER_LENGTH + dataBytes,
      dataBytes,
    };
  } catch (err) {
    if (!closed) await file.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw err;
  }
}
