/**
 * The offline engine: CMU PocketSphinx 5prealpha as Debian packages it (`pocketsphinx`, with the US English
 * acoustic model, language model and dictionary of `pocketsphinx-en-us`). `pocketsphinx_continuous` runs
 * as a child process (off the gateway's thread), reads 16 kHz 16-bit mono PCM on its standard input (never a
 * file: the audio is decrypted; see run() for the pipe) and prints each utterance's words with their times and posteriors.
 *
 * Its acoustic model is wideband (its filter bank reaches 6.8 kHz). Telephone audio has nothing above 4 kHz;
 * left empty, that band's log energies swamp the cepstra and almost nothing is recognised. So narrowband
 * audio gets a constant low noise floor in 4–8 kHz first (see audio.ts): on the project's espeak-ng test
 * speech over 8 kHz μ-law this is what turns "well what" into "hello world … recording".
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import { addHighBandNoise, isNarrowband, resampleWholeAsync } from './audio.js';
import type { TranscriptionEngine, TranscriptSegment } from './engine.js';

export const POCKETSPHINX_BINARY = '/usr/bin/pocketsphinx_continuous';
export const POCKETSPHINX_MODEL_DIR = '/usr/share/pocketsphinx/model/en-us';
/** The rate the acoustic model was trained at. */
export const POCKETSPHINX_SAMPLE_RATE = 16_000;
const STDERR_TAIL_BYTES = 4096;

export interface PocketSphinxOptions {
  binary?: string;
  modelDir?: string;
}

interface Word {
  word: string;
  startMs: number;
  endMs: number;
  posterior: number;
}

/** `word start end posterior` lines (seconds); an utterance runs from `<s>` to `</s>`. */
export function parsePocketSphinxOutput(output: string): TranscriptSegment[] {
  const segments: TranscriptSegment[] = [];
  let words: Word[] = [];
  let start: number | null = null;
  const close = (endMs: number) => {
    if (words.length > 0) {
      const confidence = words.reduce((sum, w) => sum + w.posterior, 0) / words.length;
      segments.push({ startMs: start ?? words[0]!.startMs, endMs, text: words.map((w) => w.word).join(' '), confidence: Math.min(1, Math.max(0, confidence)) });
    }
    words = [];
    start = null;
  };
  for (const line of output.split('\n')) {
    const m = /^(\S+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?(?:e[-+]?\d+)?)$/.exec(line.trim());
    if (!m) continue;
    const [, token, from, to, posterior] = m as unknown as [string, string, string, string, string];
    const startMs = Math.round(Number(from) * 1000);
    const endMs = Math.round(Number(to) * 1000);
    if (token === '<s>') {
      start = startMs;
      continue;
    }
    if (token === '</s>') {
      close(endMs);
      continue;
    }
    // Silence and fillers ([NOISE], <sil>, ++UH++) are not words.
    if (/^[<[+]/.test(token)) continue;
    words.push({ word: token.replace(/\(\d+\)$/, ''), startMs, endMs, posterior: Number(posterior) });
  }
  if (words.length > 0) close(words[words.length - 1]!.endMs);
  return segments;
}

export function createPocketSphinxEngine(options: PocketSphinxOptions = {}): TranscriptionEngine {
  const binary = options.binary ?? POCKETSPHINX_BINARY;
  const modelDir = options.modelDir ?? POCKETSPHINX_MODEL_DIR;
  return {
    name: 'pocketsphinx',
    languages: ['en-US'],
    async transcribe(pcm16, sampleRate, language, signal) {
      if (language !== 'en-US') {
        throw new CallvaultError(ErrorCode.BadRequest, 'pocketsphinx has a model for en-US only', { details: { language } });
      }
      const audio = await resampleWholeAsync(pcm16, sampleRate, POCKETSPHINX_SAMPLE_RATE);
      if (isNarrowband(audio)) addHighBandNoise(audio);
      const output = await run(binary, [
        '-infile', '/dev/stdin',
        '-time', 'yes',
        '-logfn', '/dev/null',
        '-hmm', join(modelDir, 'en-us'),
        '-lm', join(modelDir, 'en-us.lm.bin'),
        '-dict', join(modelDir, 'cmudict-en-us.dict'),
      ], audio, signal);
      return parsePocketSphinxOutput(output);
    },
  };
}

/**
 * Node's `stdio: 'pipe'` is a socket pair, which pocketsphinx cannot open as `/dev/stdin`; `cat` in front
 * turns it into a real pipe. The shell, cat and pocketsphinx form one process group, killed as one on abort.
 */
function run(binary: string, args: string[], audio: Int16Array, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const aborted = () => new CallvaultError(ErrorCode.ShuttingDown, 'transcription aborted', { cause: signal.reason, retryable: true });
    if (signal.aborted) {
      reject(aborted());
      return;
    }
    const child = spawn('/bin/sh', ['-c', 'cat | "$0" "$@"', binary, ...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const kill = () => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch (err) {
          // ESRCH: the group ended on its own meanwhile.
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
      }
    };
    const onAbort = () => {
      kill();
      reject(aborted());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    // EPIPE when the engine exits before reading everything (a bad model path): its exit status says why.
    child.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') stderr += `\nstdin: ${err.message}`;
    });
    child.on('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(new CallvaultError(ErrorCode.TranscriptionEngineFailed, 'pocketsphinx could not be started', { cause: err, details: { binary } }));
    });
    child.on('close', (code, sig) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) return;
      if (code === 0) resolve(Buffer.concat(stdout).toString('utf8'));
      else if (code === 127) {
        reject(new CallvaultError(ErrorCode.TranscriptionEngineUnavailable, 'pocketsphinx is not installed (Debian packages pocketsphinx, pocketsphinx-en-us)', { details: { binary } }));
      } else {
        reject(new CallvaultError(ErrorCode.TranscriptionEngineFailed, 'pocketsphinx failed', {
          cause: new Error(stderr.trim() || `exit ${code ?? sig}`),
          details: { exitCode: code, signal: sig },
        }));
      }
    });
    child.stdin.end(Buffer.from(audio.buffer, audio.byteOffset, audio.byteLength));
  });
}
