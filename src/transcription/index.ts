export type { TranscriptionEngine, TranscriptSegment } from './engine.js';
export { createPocketSphinxEngine, parsePocketSphinxOutput, POCKETSPHINX_BINARY, POCKETSPHINX_MODEL_DIR, type PocketSphinxOptions } from './pocketsphinx.js';
export { addHighBandNoise, isNarrowband, resampleWhole, resampleWholeAsync } from './audio.js';
