/** The frame journal keeps each frame's encoding: µ-law (0), PCM16 (1) and A-law (2) read back as written. */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { InputFrame } from '../../dist/pipeline/index.js';
import { JournalWriter, readJournal } from '../../dist/storage/journal.js';

test.each(['mulaw', 'alaw', 'pcm_s16le'] as const)('a %s frame round-trips through the journal with its encoding', async (encoding) => {
  const dir = await mkdtemp(join(tmpdir(), 'cv-journal-'));
  try {
    const id = randomUUID();
    const dataKey = randomBytes(32);
    const path = join(dir, `${id}.journal`);
    const journal = await JournalWriter.create({ path, recordingId: id, dataKey });
    const frame: InputFrame = { trackId: 'inbound', role: 'caller', encoding, sampleRate: 8000, position: 160, data: new Uint8Array(randomBytes(320)) };
    journal.add(frame);
    await journal.flush();
    await journal.close();
    const { frames } = await readJournal(path, id, dataKey);
    expect(frames).toEqual([frame]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
