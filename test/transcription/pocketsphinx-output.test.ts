/** How PocketSphinx's `-time yes` output becomes segments: utterances, alternates, fillers, confidences. */
import { describe, expect, test } from 'vitest';
import { parsePocketSphinxOutput } from '../../dist/transcription/index.js';

describe('parsePocketSphinxOutput', () => {
  test('one segment per utterance; alternates lose their (n); silence and fillers are not words; confidence is the mean posterior', () => {
    const output = [
      'hello world',
      '<s> 1.880 2.000 0.999000',
      'hello 2.010 2.440 0.500000',
      '[NOISE] 2.440 2.450 0.100000',
      'world(2) 2.450 3.020 1.000000',
      '<sil> 3.020 3.100 0.900000',
      '</s> 3.130 3.520 1.000000',
      'again',
      '<s> 7.570 7.680 0.998401',
      'again 7.690 8.110 0.250000',
      '</s> 8.120 8.200 1.000000',
    ].join('\n');
    expect(parsePocketSphinxOutput(output)).toEqual([
      { startMs: 1880, endMs: 3520, text: 'hello world', confidence: 0.75 },
      { startMs: 7570, endMs: 8200, text: 'again', confidence: 0.25 },
    ]);
  });

  test.each([
    ['nothing at all', ''],
    ['an utterance of silence only', '<s> 0.000 0.500 1.000000\n<sil> 0.500 0.900 0.9\n</s> 0.900 1.000 1.000000'],
  ])('%s gives no segment', (_what, output) => {
    expect(parsePocketSphinxOutput(output)).toEqual([]);
  });

  test('an utterance cut off before </s> still counts, ending at its last word', () => {
    expect(parsePocketSphinxOutput('<s> 0.100 0.200 1.0\nhi 0.200 0.600 0.5')).toEqual([{ startMs: 100, endMs: 600, text: 'hi', confidence: 0.5 }]);
  });
});
