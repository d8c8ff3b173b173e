export { createTwilioRestClient, downloadRecordingWav, twilioError, TWILIO_API_ORIGIN, type TwilioRestClient, type TwilioRestOptions } from './client.js';
export { importTwilioRecording, type TwilioRecordingRef } from './import.js';
export { pollTwilioRecordings, startTwilioPoller, POLL_CALL_LIMIT, POLL_LOOKBACK_MS, type PolledCall, type PollOutcome } from './poller.js';
