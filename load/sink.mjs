#!/usr/bin/env node
// The floor the gateway is measured against: the same native uWebSockets.js binding, the same routes and
// socket settings, and every message discarded on arrival. Prints `listening <port>` once ready.
//
//   node load/sink.mjs [--port 0]
import { parseArgs } from 'node:util';
import { loadNativeUws } from '../dist/server/uws.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const uws = loadNativeUws();
let messages = 0;
const app = uws.App();
// The gateway's two ingest sockets as the load driver sends them (Twilio Media Streams, LiveKit Track Egress), each
// with the gateway's own limits; the egress URL's query (its signature) is not even read.
for (const [path, maxPayloadLength] of [
  ['/twilio/media', 1024 * 1024],
  ['/livekit/egress', 256 * 1024],
]) {
  app.ws(path, {
    maxPayloadLength,
    idleTimeout: 60,
    maxBackpressure: 64 * 1024,
    sendPingsAutomatically: true,
    message: () => {
      messages++;
    },
  });
}
app.get('/messages', (res) => res.end(String(messages)));
app.listen('127.0.0.1', Number(values.port), (token) => {
  if (!token) {
    process.stderr.write('sink: could not listen\n');
    process.exit(1);
  }
  process.stdout.write(`listening ${uws.us_socket_local_port(token)}\n`);
});
