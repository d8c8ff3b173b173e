/**
 * For the management tests: a local HTTP server answering like Twilio's Recordings API (create, list, fetch,
 * update, media download, delete), reached by the real `twilio` client through TWILIO_API_BASE_URL, and
 * signed status callbacks. Started with `carrier: 'signalwire'` it answers like a SignalWire Space's LaML
 * (Compatibility) API instead: paths under /api/laml, project ids and UUID SIDs, channels as strings.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import twilio from 'twilio';
import { wavHeader } from '../../dist/audio/wav.js';
import { generateTone } from '../support/audio.js';
import { PUBLIC_URL, type TestAccount, type TestGateway } from '../support/gateway.js';
import { apiKeyOf } from '../api/support.js';

/** A run of real MPEG audio frame headers with random bodies: what the gateway reads of an MP3 is only its headers. */
export function mpegFrames(kind: { header: number[]; length: number }, count: number): Buffer {
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) frames.push(Buffer.concat([Buffer.from(kind.header), randomBytes(kind.length - 4)]));
  return Buffer.concat(frames);
}

/** The `ElevenLabs-Signature` header: HMAC-SHA256 over "<t>.<raw body>", as ElevenLabs signs. */
export function elevenLabsSignature(body: string, secret: string, timestamp: number): string {
  const v0 = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v0=${v0}`;
}

export const TWILIO_LEFT_HZ = 500;
export const TWILIO_RIGHT_HZ = 1200;

/** A dual-channel 8 kHz PCM16 WAV: a tone per channel, as Twilio's dual-channel recordings are laid out. */
export function dualChannelWav(durationMs: number, leftHz = TWILIO_LEFT_HZ, rightHz = TWILIO_RIGHT_HZ): Buffer {
  const samples = (durationMs * 8000) / 1000;
  const left = generateTone({ frequency: leftHz, sampleRate: 8000, samples, amplitude: 12000 });
  const right = generateTone({ frequency: rightHz, sampleRate: 8000, samples, amplitude: 12000 });
  const pcm = Buffer.alloc(samples * 4);
  for (let i = 0; i < samples; i++) {
    pcm.writeInt16LE(left[i]!, i * 4);
    pcm.writeInt16LE(right[i]!, i * 4 + 2);
  }
  return Buffer.concat([wavHeader({ sampleRate: 8000, channels: 2, dataBytes: pcm.length }), pcm]);
}

export interface FakeRecording {
  sid: string;
  accountSid: string;
  callSid: string;
  status: 'in-progress' | 'paused' | 'stopped' | 'completed' | 'absent';
  channels: number;
  track: string;
  statusCallback: string | null;
  pauseBehavior: string | null;
  wav: Buffer;
  deleted: boolean;
}

/** A call Twilio knows, as its Calls resource describes it. */
export interface FakeCall {
  sid: string;
  accountSid: string;
  status: 'queued' | 'ringing' | 'in-progress' | 'completed' | 'busy' | 'failed' | 'no-answer' | 'canceled';
  from: string;
  to: string;
  direction: 'inbound' | 'outbound-api' | 'outbound-dial';
}

export interface SeenRequest {
  method: string;
  path: string;
  form: Record<string, string | string[]>;
}

function newSid(prefix: string): string {
  return `${prefix}${randomBytes(16).toString('hex')}`;
}

export type FakeCarrier = 'twilio' | 'signalwire';
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
/** The Recordings paths each carrier serves: /2010-04-01/Accounts/{account}/[Calls/{call}/]Recordings[/{sid}](.json|.wav). */
const RECORDING_PATH: Record<FakeCarrier, RegExp> = {
  twilio: /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/(?:Calls\/(CA[0-9a-f]{32})\/)?Recordings(?:\/(RE[0-9a-f]{32}))?(\.json|\.wav)$/,
  signalwire: new RegExp(`^/api/laml/2010-04-01/Accounts/(${UUID})/(?:Calls/(${UUID})/)?Recordings(?:/(${UUID}))?(\\.json|\\.wav)$`),
};

const CALL_PATH: Record<FakeCarrier, RegExp> = {
  twilio: /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Calls\/([A-Za-z0-9-]+)\.json$/,
  signalwire: new RegExp(`^/api/laml/2010-04-01/Accounts/(${UUID})/Calls/(${UUID})\\.json$`),
};

function readForm(req: IncomingMessage): Promise<Record<string, string | string[]>> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) {
        const prev = out[k];
        out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      resolve(out);
    });
  });
}

export class FakeTwilio {
  readonly recordings = new Map<string, FakeRecording>();
  /** Calls Twilio knows: fetching another, or creating a recording on it, answers Twilio's 404. */
  readonly calls = new Map<string, FakeCall>();
  readonly requests: SeenRequest[] = [];
  /** Calls whose requests answer 500, as an outage would. */
  readonly failingCalls = new Set<string>();
  /** Calls whose requests have their connection dropped without an answer (a network failure, not an HTTP error). */
  readonly droppingCalls = new Set<string>();
  #server: Server;
  port = 0;

  private constructor(
    server: Server,
    readonly accounts: TestAccount[],
    readonly carrier: FakeCarrier,
  ) {
    this.#server = server;
  }

  static async start(accounts: TestAccount[], opts: { carrier?: FakeCarrier } = {}): Promise<FakeTwilio> {
    const server = createServer();
    const fake = new FakeTwilio(server, accounts, opts.carrier ?? 'twilio');
    server.on('request', (req, res) => void fake.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    fake.port = (server.address() as { port: number }).port;
    return fake;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A live call of the account (one that need not stream to the gateway). */
  addCall(account: TestAccount, callSid = newSid('CA'), init: Partial<Omit<FakeCall, 'sid' | 'accountSid'>> = {}): FakeCall {
    const call: FakeCall = { sid: callSid, accountSid: account.accountSid, status: 'in-progress', from: '+15017122661', to: '+15558675310', direction: 'inbound', ...init };
    this.calls.set(call.sid, call);
    return call;
  }

  #callResource(call: FakeCall): Record<string, unknown> {
    const base = `/2010-04-01/Accounts/${call.accountSid}/Calls/${call.sid}`;
    const ended = call.status === 'completed';
    return {
      account_sid: call.accountSid,
      annotation: null,
      answered_by: null,
      api_version: '2010-04-01',
      caller_name: null,
      date_created: 'Tue, 01 Jan 2030 00:00:00 +0000',
      date_updated: 'Tue, 01 Jan 2030 00:00:05 +0000',
      direction: call.direction,
      duration: ended ? '5' : null,
      end_time: ended ? 'Tue, 01 Jan 2030 00:00:05 +0000' : null,
      forwarded_from: null,
      from: call.from,
      from_formatted: call.from,
      group_sid: null,
      parent_call_sid: null,
      phone_number_sid: `PN${'0'.repeat(32)}`,
      price: null,
      price_unit: 'USD',
      sid: call.sid,
      start_time: 'Tue, 01 Jan 2030 00:00:00 +0000',
      status: call.status,
      subresource_uris: { recordings: `${base}/Recordings.json`, notifications: `${base}/Notifications.json` },
      to: call.to,
      to_formatted: call.to,
      trunk_sid: null,
      uri: `${base}.json`,
      queue_time: '0',
    };
  }

  /** Twilio's answer for a resource it does not know: code 20404, naming the path. */
  #notFound(res: ServerResponse, path: string): void {
    this.#json(res, 404, {
      code: 20404,
      message: `The requested resource ${path} was not found`,
      more_info: 'https://www.twilio.com/docs/errors/20404',
      status: 404,
    });
  }

  /** A new recording SID of this carrier: RE… for Twilio, a UUID for SignalWire. */
  newRecordingSid(): string {
    return this.carrier === 'signalwire' ? randomUUID() : newSid('RE');
  }

  /** A recording Twilio holds for the call (made outside callvault, e.g. by `<Record>`), completed. */
  addCompleted(account: TestAccount, callSid: string, durationMs = 1000): FakeRecording {
    const rec: FakeRecording = {
      sid: this.newRecordingSid(),
      accountSid: account.accountSid,
      callSid,
      status: 'completed',
      channels: 2,
      track: 'both',
      statusCallback: null,
      pauseBehavior: null,
      wav: dualChannelWav(durationMs),
      deleted: false,
    };
    this.recordings.set(rec.sid, rec);
    return rec;
  }

  #json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  #resource(rec: FakeRecording): Record<string, unknown> {
    return {
      account_sid: rec.accountSid,
      api_version: '2010-04-01',
      call_sid: rec.callSid,
      conference_sid: null,
      date_created: 'Tue, 01 Jan 2030 00:00:00 +0000',
      date_updated: 'Tue, 01 Jan 2030 00:00:00 +0000',
      start_time: 'Tue, 01 Jan 2030 00:00:00 +0000',
      duration: rec.status === 'completed' ? '1' : '-1',
      sid: rec.sid,
      price: null,
      price_unit: 'USD',
      status: rec.status,
      // SignalWire documents channels as the strings '1' and '2'.
      channels: this.carrier === 'signalwire' ? String(rec.channels) : rec.channels,
      source: 'StartCallRecordingAPI',
      error_code: null,
      track: rec.track,
      uri: `${this.carrier === 'signalwire' ? '/api/laml' : ''}/2010-04-01/Accounts/${rec.accountSid}/Calls/${rec.callSid}/Recordings/${rec.sid}.json`,
      encryption_details: null,
    };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.baseUrl);
    if ([...this.droppingCalls].some((sid) => url.pathname.includes(`/Calls/${sid}`))) {
      req.socket.destroy();
      return;
    }
    const form = req.method === 'POST' ? await readForm(req) : {};
    this.requests.push({ method: req.method ?? '', path: url.pathname, form });
    const auth = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString('utf8');
    const [user, pass] = auth.split(':');
    const account = this.accounts.find((a) => a.accountSid === user && a.authToken === pass);
    const callFetch = CALL_PATH[this.carrier].exec(url.pathname);
    if (account && callFetch && callFetch[1] === account.accountSid && req.method === 'GET') {
      const call = this.calls.get(callFetch[2]!);
      if (!call || call.accountSid !== account.accountSid) return this.#notFound(res, url.pathname);
      if (this.failingCalls.has(call.sid)) return this.#json(res, 500, { code: 20500, message: 'Internal Server Error', status: 500 });
      return this.#json(res, 200, this.#callResource(call));
    }
    const m = RECORDING_PATH[this.carrier].exec(url.pathname);
    if (!account) {
      this.#json(res, 401, { code: 20003, message: 'Authenticate', more_info: 'https://www.twilio.com/docs/errors/20003', status: 401 });
      return;
    }
    if (!m || m[1] !== account.accountSid) return this.#notFound(res, url.pathname);
    const [, accountSid, callSid, sid, ext] = m;
    if (callSid && this.failingCalls.has(callSid)) {
      this.#json(res, 500, { code: 20500, message: 'Internal Server Error', status: 500 });
      return;
    }
    const rec = sid ? this.recordings.get(sid) : undefined;
    if (sid && (!rec || rec.deleted || rec.accountSid !== accountSid)) {
      this.#json(res, 404, { code: 20404, message: 'The requested resource was not found', status: 404 });
      return;
    }
    if (ext === '.wav' && rec && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'audio/x-wav', 'content-length': rec.wav.length });
      res.end(rec.wav);
      return;
    }
    if (req.method === 'DELETE' && rec) {
      rec.deleted = true;
      res.writeHead(204);
      res.end();
      return;
    }
    if (req.method === 'GET' && rec) return this.#json(res, 200, this.#resource(rec));
    if (req.method === 'GET' && callSid) {
      const list = [...this.recordings.values()].filter((r) => r.callSid === callSid && !r.deleted).map((r) => this.#resource(r));
      return this.#json(res, 200, {
        recordings: list,
        first_page_uri: url.pathname,
        next_page_uri: null,
        previous_page_uri: null,
        page: 0,
        page_size: 50,
        start: 0,
        end: list.length,
        uri: url.pathname,
      });
    }
    if (req.method === 'POST' && callSid && !sid) {
      const call = this.calls.get(callSid);
      if (!call || call.accountSid !== accountSid) return this.#notFound(res, url.pathname);
      if (call.status !== 'in-progress') {
        return this.#json(res, 400, { code: 21220, message: 'Requested resource is not eligible for recording', status: 400 });
      }
      const created: FakeRecording = {
        sid: this.newRecordingSid(),
        accountSid: accountSid!,
        callSid,
        status: 'in-progress',
        channels: form['RecordingChannels'] === 'dual' ? 2 : 1,
        track: String(form['RecordingTrack'] ?? 'both'),
        statusCallback: typeof form['RecordingStatusCallback'] === 'string' ? form['RecordingStatusCallback'] : null,
        pauseBehavior: null,
        wav: dualChannelWav(1000),
        deleted: false,
      };
      this.recordings.set(created.sid, created);
      return this.#json(res, 201, this.#resource(created));
    }
    if (req.method === 'POST' && rec) {
      const status = String(form['Status'] ?? '');
      const allowed: Record<string, string[]> = { paused: ['in-progress'], 'in-progress': ['paused'], stopped: ['in-progress', 'paused'] };
      if (!allowed[status]?.includes(rec.status)) {
        return this.#json(res, 400, { code: 21220, message: `Cannot change a ${rec.status} recording to ${status}`, status: 400 });
      }
      rec.status = status === 'stopped' ? 'completed' : (status as FakeRecording['status']);
      rec.pauseBehavior = typeof form['PauseBehavior'] === 'string' ? form['PauseBehavior'] : rec.pauseBehavior;
      return this.#json(res, 200, this.#resource({ ...rec, status: status === 'stopped' ? 'stopped' : rec.status }));
    }
    this.#json(res, 405, { code: 20004, message: 'Method not allowed', status: 405 });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export const RECORDING_WEBHOOK_URL = `${PUBLIC_URL}/webhooks/twilio-recording`;

/** Posts a RecordingStatusCallback to the gateway, signed like Twilio signs it (unless told otherwise). */
export function postRecordingCallback(
  t: TestGateway,
  account: TestAccount,
  params: Record<string, string>,
  opts: { signature?: string | null; signWith?: string } = {},
): Promise<Response> {
  const body = new URLSearchParams(params);
  const signature =
    opts.signature === undefined ? twilio.getExpectedTwilioSignature(opts.signWith ?? account.authToken, RECORDING_WEBHOOK_URL, params) : opts.signature;
  return fetch(`${t.httpUrl}/webhooks/twilio-recording`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(signature === null ? {} : { 'x-twilio-signature': signature }) },
    body: body.toString(),
  });
}

export function completedParams(account: TestAccount, rec: Pick<FakeRecording, 'sid' | 'callSid'>): Record<string, string> {
  return {
    AccountSid: account.accountSid,
    CallSid: rec.callSid,
    RecordingSid: rec.sid,
    RecordingUrl: `https://api.twilio.com/2010-04-01/Accounts/${account.accountSid}/Recordings/${rec.sid}`,
    RecordingStatus: 'completed',
    RecordingDuration: '1',
    RecordingChannels: '2',
    RecordingStartTime: 'Tue, 01 Jan 2030 00:00:00 +0000',
    RecordingSource: 'StartCallRecordingAPI',
  };
}

/** JSON request to the gateway's API as the organisation. */
export function apiJson(t: TestGateway, method: string, path: string, body?: unknown, org = 'acme'): Promise<Response> {
  return fetch(`${t.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKeyOf(t, org)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    redirect: 'manual',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
