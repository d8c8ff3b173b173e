export {
  createTwilioRestClient,
  downloadRecordingWav,
  twilioError,
  TWILIO_API_ORIGIN,
  type TwilioCredentials,
  type TwilioRestClient,
  type TwilioRestOptions,
} from './client.js';
