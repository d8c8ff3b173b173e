import type { Migration } from './migration.js';

export const elevenlabs: Migration = {
  version: 3,
  name: 'elevenlabs',
  sql: `
-- An ElevenLabs conversation without a Twilio CallSid is its own call, keyed by its conversation id.
ALTER TABLE calls DROP CONSTRAINT calls_source_check;
ALTER TABLE calls ADD CONSTRAINT calls_source_check CHECK (source IN ('twilio', 'livekit', 'elevenlabs'));

-- MP3 is stored as received, undecoded: its rate and channel count are 0 when its frames do not say.
-- PCM recordings keep the original bounds.
ALTER TABLE recordings DROP CONSTRAINT recordings_sample_rate_check;
ALTER TABLE recordings DROP CONSTRAINT recordings_channels_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_sample_rate_check
  CHECK (sample_rate > 0 OR (format = 'mp3' AND sample_rate = 0));
ALTER TABLE recordings ADD CONSTRAINT recordings_channels_check
  CHECK (channels BETWEEN 1 AND 32 OR (format = 'mp3' AND channels = 0));
`,
};
