/**
 * Rebuilding a recording's pipeline state from its journal, when the worker thread that held it died. The
 * pipeline is deterministic, so replaying the frames that earlier batches took, from the recording's
 * initial state, yields the very ciphertext already in the spool and the state that produced it. The
 * replay is checked against the spool byte for byte as it goes: a mismatch (a frame that counted as late
 * in the live batches and not in the replay's) is an error, never a silently different recording.
 */
import { open } from 'node:fs/promises';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { InputFrame } from '../pipeline/index.js';
import type { PipelineSession } from '../pipeline/pool.js';
import type { JournalWriter } from '../storage/index.js';

/** Frames per worker hop while replaying: about ten seconds of a two-track Twilio call. */
export const REPLAY_BATCH_FRAMES = 1000;

export interface RebuildParams {
  session: PipelineSession;
  journal: JournalWriter;
  /** Journal frames [0, upTo) went through the pipeline before (less `lost`). */
  upTo: number;
  /** Journal ranges [from, to) whose batches failed: left out, as they were. */
  lost: ReadonlyArray<readonly [number, number]>;
  spoolPath: string;
  /** The spool's container body: bytes [spoolFrom, spoolTo) are what the earlier batches appended. */
  spoolFrom: number;
  spoolTo: number;
  signal: AbortSignal;
}

function withoutLost(frames: InputFrame[], firstIndex: number, lost: RebuildParams['lost']): InputFrame[] {
  if (lost.length === 0) return frames;
  return frames.filter((_, i) => !lost.some(([from, to]) => firstIndex + i >= from && firstIndex + i < to));
}

export async function rebuildSession(p: RebuildParams): Promise<void> {
  p.session.restart();
  await p.journal.flush();
  const spool = await open(p.spoolPath, 'r');
  try {
    let position = p.spoolFrom;
    let index = 0;
    while (index < p.upTo) {
      if (p.signal.aborted) throw p.signal.reason;
      const read = await p.journal.readFrames(index, REPLAY_BATCH_FRAMES);
      if (read.length === 0) throw new CallvaultError(ErrorCode.SpoolFailed, 'frame journal ends before the frames the pipeline took');
      const frames = read.slice(0, p.upTo - index);
      const batch = withoutLost(frames, index, p.lost);
      index += frames.length;
      const { output } = await p.session.run(batch, false, p.signal);
      if (output.byteLength === 0) continue;
      const expected = Buffer.allocUnsafe(output.byteLength);
      const { bytesRead } = await spool.read(expected, 0, output.byteLength, position);
      if (bytesRead !== output.byteLength || !expected.equals(output)) {
        throw new CallvaultError(ErrorCode.PipelineFailed, 'replayed pipeline output differs from the spool', { details: { frames: index, spoolOffset: position } });
      }
      position += output.byteLength;
    }
    if (position !== p.spoolTo) {
      throw new CallvaultError(ErrorCode.PipelineFailed, 'replayed pipeline output is shorter than the spool', { details: { replayed: position, spool: p.spoolTo } });
    }
  } finally {
    await spool.close();
  }
}
