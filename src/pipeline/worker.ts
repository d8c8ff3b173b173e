/**
 * Worker-thread entry for piscina: one call's batch of frames in, encrypted container bytes out.
 * Everything the call needs travels with the task (DSP state, encryptor state), so any thread can take
 * any batch and the result equals processing the whole call in one piece.
 */
import { Piscina } from 'piscina';
import { encryptChunk, type EncryptorState } from '../crypto/index.js';
import { processBatch } from './dsp.js';
import type { BatchStats, CallDspState, InputFrame } from './types.js';

export interface PipelineTask {
  dsp: CallDspState;
  encryptor: EncryptorState;
  frames: InputFrame[];
  /** Flush everything and seal the final segment. */
  final: boolean;
}

export interface PipelineResult {
  dsp: CallDspState;
  encryptor: EncryptorState;
  /** Sealed segments to append to the spool, in order. */
  output: Uint8Array;
  stats: BatchStats;
}

export default function runPipelineBatch(task: PipelineTask): PipelineResult {
  const { state: dsp, pcm, stats } = processBatch(task.dsp, task.frames, { final: task.final });
  const { state: encryptor, output } = encryptChunk(task.encryptor, pcm, task.final);
  // Moving the ciphertext's buffer back avoids a copy on the hot path.
  return { dsp, encryptor, output, stats };
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
