/**
 * Worker-thread entry (piscina) for ElevenLabs deliveries: a 32 MiB body is verified, parsed and decoded
 * here, so the thread that serves live calls never blocks on it.
 */
import { readPostCall, type PostCallInput, type PostCallReading } from './elevenlabs-body.js';

export default function readPostCallInWorker(input: PostCallInput): PostCallReading {
  return readPostCall(input);
}
