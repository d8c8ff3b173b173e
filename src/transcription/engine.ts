/**
 * What a transcription engine is to callvault: 16-bit PCM of one channel in, timed text segments out. The
 * job runner (src/api/manage/transcription.ts) splits a recording into its channels (that is the diarization:
 * channel 0 is the caller, 1 the bot) and hands each to the engine on its own.
 */
export interface TranscriptSegment {
  /** From the start of the audio handed in, in ms. */
  startMs: number;
  endMs: number;
  text: string;
  /** 0…1 as the engine reports it; null when it reports none. */
  confidence: number | null;
}

export interface TranscriptionEngine {
  /** As asked for in `POST …/transcription` `{ engine }`. */
  readonly name: string;
  /** BCP 47 tags the engine has models for; the first is its default. */
  readonly languages: readonly string[];
  /** Segments in time order. Rejects with a CallvaultError (stable code); aborting the signal ends the work. */
  transcribe(pcm16: Int16Array, sampleRate: number, language: string, signal: AbortSignal): Promise<TranscriptSegment[]>;
}
