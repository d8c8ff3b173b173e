export { importTwilioRecording } from './import.js';
export { pollTwilioRecordings, startTwilioPoller, twilioImports, POLL_CALL_LIMIT, POLL_LOOKBACK_MS } from './poller.js';
