/**
 * Worker-thread entry for piscina. Each thread keeps the DSP and encryptor state of the calls pinned to it
 * (a session per recording), so a batch carries only its frames (their payloads in one transferred buffer)
 * and only the sealed ciphertext comes back (transferred too). The state crosses once, with a session's
 * first batch (`init`); after that it never leaves this thread.
 *
 * A session's state changes only when a batch succeeds: a batch that throws leaves it as it was, so the
 * owner can record the lost span as a gap and carry on. When the thread itself dies, its sessions die with
 * it; the owner learns that from `holds()` and rebuilds the state by replaying its journal.
 */
import { Piscina } from 'piscina';
import { encryptChunk, type EncryptorState } from '../crypto/index.js';
import { processBatch } from './dsp.js';
import type { BatchStats, CallDspState, InputFrame } from './types.js';

interface SessionState {
  dsp: CallDspState;
  encryptor: EncryptorState;
}

interface HeldSession extends SessionState {
  /** The session's tracks, by index: a frame names its track by index, the strings cross once. */
  tracks: TrackInfo[];
}

const sessions = new Map<number, HeldSession>();

/** What is fixed for the life of a track: sent once per session (again after a rebuild). */
export interface TrackInfo {
  trackId: string;
  role: InputFrame['role'];
  encoding: InputFrame['encoding'];
  sampleRate: number;
}

/** Per frame, three numbers in `BatchTask.frames`: track index, position, payload length. */
export const FRAME_FIELDS = 3;

export interface BatchTask {
  session: number;
  /** The state a session starts from: sent until a batch of the session has succeeded on this thread. */
  init?: SessionState;
  /** Tracks the thread does not know yet, to be stored from index `tracksFrom` on. */
  tracksFrom: number;
  tracks: TrackInfo[];
  /** FRAME_FIELDS numbers per frame (plain numbers structured-clone far cheaper than objects with strings). */
  frames: Float64Array;
  /** Every frame's payload, in order; its buffer is transferred, not copied. */
  payload: Uint8Array;
  /** Flush everything and seal the final segment; the session ends with it. */
  final: boolean;
}

export type BatchResult =
  | { ok: true; output: Uint8Array; stats: BatchStats }
  /** This thread does not hold the session (it is a replacement for one that died) and no `init` came. */
  | { ok: false; reason: 'session_unknown' };

function unpack(task: BatchTask, tracks: readonly TrackInfo[]): InputFrame[] {
  const count = task.frames.length / FRAME_FIELDS;
  const frames: InputFrame[] = new Array<InputFrame>(count);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const track = tracks[task.frames[i * FRAME_FIELDS]!];
    if (!track) throw new Error('frame names a track the session does not have');
    const length = task.frames[i * FRAME_FIELDS + 2]!;
    frames[i] = {
      trackId: track.trackId,
      role: track.role,
      encoding: track.encoding,
      sampleRate: track.sampleRate,
      position: task.frames[i * FRAME_FIELDS + 1]!,
      data: task.payload.subarray(offset, offset + length),
    };
    offset += length;
  }
  return frames;
}

/** Marks a result for transfer: its ciphertext buffer moves back to the main thread instead of being copied. */
function moved(result: BatchResult, buffer: ArrayBuffer | null): unknown {
  if (!buffer) return result;
  return Piscina.move({
    [Piscina.transferableSymbol]: [buffer],
    [Piscina.valueSymbol]: result,
  } as never);
}

function runOne(task: BatchTask): BatchResult {
  // `init` means "start from here" (a first batch, or a rebuild): it wins over anything held.
  const held = task.init ? { ...task.init, tracks: [] } : sessions.get(task.session);
  if (!held) return { ok: false, reason: 'session_unknown' };
  const tracks = held.tracks.slice(0, task.tracksFrom).concat(task.tracks);
  const { state: dsp, pcm, stats } = processBatch(held.dsp, unpack(task, tracks), { final: task.final });
  const { state: encryptor, output } = encryptChunk(held.encryptor, pcm, task.final);
  if (task.final) sessions.delete(task.session);
  else sessions.set(task.session, { dsp, encryptor, tracks });
  return { ok: true, output, stats };
}

export default function runBatch(task: BatchTask): unknown {
  const result = runOne(task);
  // encryptChunk returns a fresh buffer of exactly the output: the whole of it can move.
  return moved(result, result.ok && result.output.byteLength > 0 ? (result.output.buffer as ArrayBuffer) : null);
}

/** Several sessions' batches in one message (those the gateway's tick started together; see pool.ts). */
export interface BatchGroupTask {
  batches: BatchTask[];
}

/** Per batch of a group: its result, or why it threw (it fails alone; its session's state is as before it). */
export type GroupResult = BatchResult | { failed: string };

/** Named task `runBatches`: each batch of the group in turn; every ciphertext moves back. */
export function runBatches(task: BatchGroupTask): unknown {
  const results: GroupResult[] = [];
  const buffers: ArrayBuffer[] = [];
  for (const batch of task.batches) {
    try {
      const result = runOne(batch);
      if (result.ok && result.output.byteLength > 0) buffers.push(result.output.buffer as ArrayBuffer);
      results.push(result);
    } catch (err) {
      results.push({ failed: err instanceof Error ? err.message : String(err) });
    }
  }
  return Piscina.move({ [Piscina.transferableSymbol]: buffers, [Piscina.valueSymbol]: results } as never);
}

/** Named task `holds`: whether this thread still holds the session's state. */
export function holds(task: { session: number }): boolean {
  return sessions.has(task.session);
}

/** Named task `drop`: the session's owner is done with it (closed, destroyed, abandoned). */
export function drop(task: { session: number }): boolean {
  return sessions.delete(task.session);
}

export interface SealTask {
  encryptor: EncryptorState;
  /** A finished recording's whole plaintext (an import): encrypted and sealed in one go. */
  plaintext: Uint8Array;
}

/** Named task `seal`: an import's audio (up to 32 MiB) is encrypted here, never on the main thread. */
export function seal(task: SealTask): Uint8Array {
  return encryptChunk(task.encryptor, task.plaintext, true).output;
}
