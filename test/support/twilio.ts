/**
 * A Twilio media stream driven frame by frame from a test: the test decides exactly which media
 * reaches the gateway before and after each control action.
 */
import WebSocket from 'ws';
import {
  buildMediaMessage,
  buildStartMessage,
  buildStopMessage,
  randomCallSid,
  randomStreamSid,
  signStreamUrl,
  simulateTwilioCall,
} from '../../dist/ingest/twilio/index.js';
import { mulawEncode } from '../../dist/pipeline/index.js';
import { generateTone } from './audio.js';
import { PUBLIC_URL, type TestAccount, type TestGateway } from './gateway.js';

export const SIGNED_URL = `${PUBLIC_URL.replace('https', 'wss')}/twilio/media`;

export class RawTwilioStream {
  readonly callSid: string;
  readonly streamSid: string;
  readonly closed: Promise<{ code: number; reason: string }>;
  #seq = 1;
  #chunks = { inbound: 0, outbound: 0 };

  private constructor(
    readonly ws: WebSocket,
    readonly account: TestAccount,
    ids: { callSid?: string | undefined; streamSid?: string | undefined } = {},
  ) {
    this.callSid = ids.callSid ?? randomCallSid();
    this.streamSid = ids.streamSid ?? randomStreamSid();
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('error', () => undefined);
  }

  /**
   * Opens a signed stream; rejects with `{ status, body }` when the gateway refuses the upgrade. `query` (e.g.
   * `?token=…`) is part of the URL, signed like Twilio signs it; `callSid`/`streamSid` replay a given stream.
   */
  static async open(
    t: TestGateway,
    account: TestAccount,
    opts: { signature?: string | null; query?: string; callSid?: string; streamSid?: string } = {},
  ): Promise<RawTwilioStream> {
    const query = opts.query ?? '';
    const signature = opts.signature === undefined ? signStreamUrl(account.authToken, SIGNED_URL + query) : opts.signature;
    const ws = new WebSocket(`ws://127.0.0.1:${t.gateway.port}/twilio/media${query}`, {
      headers: signature === null ? {} : { 'X-Twilio-Signature': signature },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => reject(Object.assign(new Error('refused'), { status: res.statusCode, body })));
      });
    });
    return new RawTwilioStream(ws, account, { callSid: opts.callSid, streamSid: opts.streamSid });
  }

  get nextSequenceNumber(): number {
    return this.#seq;
  }

  send(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  start(customParameters: Record<string, string> = {}, tracks: ('inbound' | 'outbound')[] = ['inbound', 'outbound']): void {
    this.send(
      buildStartMessage({
        sequenceNumber: this.#seq++,
        accountSid: this.account.accountSid,
        callSid: this.callSid,
        streamSid: this.streamSid,
        tracks,
        customParameters,
      }),
    );
  }

  /** 20 ms frames covering [fromMs, toMs) with a tone per track (0 Hz: that track sends nothing). */
  media(fromMs: number, toMs: number, tones: { inbound: number; outbound: number }): void {
    for (let ms = fromMs; ms < toMs; ms += 20) {
      for (const track of ['inbound', 'outbound'] as const) {
        const hz = tones[track];
        if (hz === 0) continue;
        const payload = mulawEncode(generateTone({ frequency: hz, sampleRate: 8000, samples: 160, startSample: ms * 8, amplitude: 12000 }));
        this.send(
          buildMediaMessage({ sequenceNumber: this.#seq++, streamSid: this.streamSid, track, chunk: ++this.#chunks[track], timestampMs: ms, payload }),
        );
      }
    }
  }

  stop(): void {
    this.send(
      buildStopMessage({ sequenceNumber: this.#seq++, streamSid: this.streamSid, accountSid: this.account.accountSid, callSid: this.callSid }),
    );
  }

  /**
   * Resolves once the gateway has taken in every frame up to `ms` of media: ping round trips until the
   * call is set up (its first frames wait while the recording is created) and holds exactly that much.
   */
  async flushed(t: TestGateway, org: string, ms: number): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      await new Promise<void>((resolve) => this.ws.once('pong', () => resolve()).ping());
      const call = t.gateway.liveCall(org, this.callSid);
      if (call && call.mediaEndMs === ms) return;
      if (call && call.mediaEndMs > ms) throw new Error(`gateway holds ${call.mediaEndMs} ms, expected ${ms}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error(`gateway never held ${ms} ms of media`);
  }
}

/** A whole call placed with the simulator: 2 s, a 440 Hz caller and a 1000 Hz agent at 0.4 of full scale, unless told otherwise. */
export function placeCall(t: TestGateway, options: Partial<Parameters<typeof simulateTwilioCall>[0]> = {}, org = 'acme') {
  const account = t.accounts.find((a) => a.org === org)!;
  return simulateTwilioCall({
    url: t.wsUrl,
    signedUrl: `${PUBLIC_URL.replace('https', 'wss')}/twilio/media`,
    accountSid: account.accountSid,
    authToken: account.authToken,
    durationMs: 2000,
    inbound: { kind: 'tone', frequencyHz: 440, amplitude: 0.4 },
    outbound: { kind: 'tone', frequencyHz: 1000, amplitude: 0.4 },
    ...options,
  });
}
