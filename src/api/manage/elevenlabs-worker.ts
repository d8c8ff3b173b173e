/**
 * Worker-thread entry for one ElevenLabs delivery: a 32 MiB body is verified, parsed and decoded here, so the
 * thread that serves live calls never blocks on it. Started as a plain ES module worker (not through piscina,
 * whose loader tries `require()` first: Node 20's require of this ES module graph (zod's) can abort the process).
 */
import { parentPort } from 'node:worker_threads';
import { readPostCall, type PostCallInput } from './elevenlabs-body.js';

parentPort?.once('message', (input: PostCallInput) => {
  parentPort?.postMessage(readPostCall(input));
});
