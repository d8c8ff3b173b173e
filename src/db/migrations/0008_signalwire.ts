import type { Migration } from './migration.js';

export const signalwire: Migration = {
  version: 8,
  name: 'signalwire',
  sql: `
-- SignalWire as a source: calls streamed from a SignalWire project (source 'signalwire', the call id a UUID), and
-- recordings SignalWire made and callvault imported (source 'signalwire', as Twilio-side ones are 'twilio').
ALTER TABLE calls DROP CONSTRAINT calls_source_check;
ALTER TABLE calls ADD CONSTRAINT calls_source_check CHECK (source IN ('twilio', 'signalwire', 'livekit', 'elevenlabs'));
ALTER TABLE recordings DROP CONSTRAINT recordings_source_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_source_check CHECK (source IN ('gateway', 'livekit', 'twilio', 'signalwire', 'elevenlabs'));
`,
};
