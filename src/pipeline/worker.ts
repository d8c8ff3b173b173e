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

const sessions = new Map<number, SessionState>();

/** A frame without its payload: payloads travel packed in `BatchTask.payload`, one after another. */
export interface FrameHeader {
  trackId: string;
  role: InputFrame['role'];
  encoding: InputFrame['encoding'];
  sampleRate: number;
  position: number;
  length: number;
}

export interface BatchTask {
  session: number;
  /** The state a session starts from: sent until a batch of the session has succeeded on this thread. */
  init?: SessionState;
  frames: FrameHeader[];
  /** Every frame's payload, in order; its buffer is transferred, not copied. */
  payload: Uint8Array;
  /** Flush everything and seal the final segment; the session ends with it. */
  final: boolean;
}

export type BatchResult =
  | { ok: true; output: Uint8Array; stats: BatchStats }
  /** This thread does not hold the session (it is a replacement for one that died) and no `init` came. */
  | { ok: false; reason: 'session_unknown' };

function unpack(task: BatchTask): InputFrame[] {
  const frames: InputFrame[] = new Array<InputFrame>(task.frames.length);
  let offset = 0;
  for (let i = 0; i < task.frames.length; i++) {
    const h = task.frames[i]!;
    frames[i] = {
      trackId: h.trackId,
      role: h.role,
      encoding: h.encoding,
      sampleRate: h.sampleRate,
      position: h.position,
      data: task.payload.subarray(offset, offset + h.length),
    };
    offset += h.length;
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

export default function runBatch(task: BatchTask): unknown {
  // `init` means "start from here" (a first batch, or a rebuild): it wins over anything held.
  const state = task.init ?? sessions.get(task.session);
  if (!state) return { ok: false, reason: 'session_unknown' } satisfies BatchResult;
  const { state: dsp, pcm, stats } = processBatch(state.dsp, unpack(task), { final: task.final });
  const { state: encryptor, output } = encryptChunk(state.encryptor, pcm, task.final);
  if (task.final) sessions.delete(task.session);
  else sessions.set(task.session, { dsp, encryptor });
  // encryptChunk returns a fresh buffer of exactly the output: the whole of it can move.
  const whole = output.byteOffset === 0 && output.byteLength === output.buffer.byteLength;
  const out = whole ? output : output.slice();
  return moved({ ok: true, output: out, stats }, out.byteLength > 0 ? (out.buffer as ArrayBuffer) : null);
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
