/**
 * Artifacts stored encrypted like the audio, against a real gateway (PostgreSQL, MinIO): when a call ends its
 * transcript.json / session_events.json / call_metadata.json are sealed as container objects (version 2,
 * content type application/json) and the staged rows are dropped. Server key mode: the objects are
 * ciphertext, the API serves the JSON decrypted, a late POST re-seals. Client key mode (a key and a
 * passphrase): the API answers 302 to a presigned URL of the object, which the real CLI decrypts to the
 * JSON; a POST after the call is a 409 ARTIFACTS_SEALED. While staged (the call live), the rows in PostgreSQL
 * hold the posted text and data only sealed. DELETE removes them; another organisation gets 404.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseHeader } from '../../dist/crypto/index.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { RawTwilioStream } from '../support/twilio.js';
import { api, apiKeyOf, placeCall } from '../api/support.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../bin/callvault.js');

let t: TestGateway;
let work: string;

beforeAll(async () => {
  t = await startTestGateway();
  work = await mkdtemp(join(tmpdir(), 'callvault-sealed-'));
});

afterAll(async () => {
  if (t) await expectAnsweredStatusesDocumented(t.gateway);
  await t?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
});

function post(path: string, body: unknown, org = 'acme'): Promise<Response> {
  return fetch(`${t.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKeyOf(t, org)}` },
    body: JSON.stringify(body),
  });
}

const entry = (text: string, timestamp: string, channel: 'caller' | 'bot' = 'caller') => ({
  timestamp,
  channel,
  type: channel === 'caller' ? 'input' : 'output',
  text,
  confidence: 0.9,
  duration_ms: 400,
});

const functionCall = {
  type: 'function_call',
  timestamp: '2026-12-01T14:30:24.000100Z',
  function_name: 'lookup_quasar',
  arguments: { account: 'xylophone-42' },
  result: { status: 'marmalade' },
  call_id: 'call_1',
};

/** The words posted, none of which may appear in a sealed object's bytes. */
const SECRET_WORDS = ['Zanzibar', 'pineapple', 'lookup_quasar', 'xylophone', 'marmalade', 'Kilimanjaro'];

async function callDbId(callSid: string): Promise<string> {
  return (await t.gateway.db.calls.getByExternalId('acme', callSid))!.id;
}

async function objectBytes(objectKey: string): Promise<Buffer> {
  const got = await t.gateway.services.s3.send(new GetObjectCommand({ Bucket: t.bucket, Key: objectKey }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

async function objectExists(objectKey: string): Promise<boolean> {
  return t.gateway.services.s3.send(new HeadObjectCommand({ Bucket: t.bucket, Key: objectKey })).then(
    () => true,
    (err: { $metadata?: { httpStatusCode?: number } }) => {
      if (err.$metadata?.httpStatusCode === 404) return false;
      throw err;
    },
  );
}

/** The call's sealed documents once its end has sealed all three. */
async function sealedOf(callSid: string) {
  const id = await callDbId(callSid);
  await expect.poll(async () => (await t.gateway.db.artifacts.sealed(id)).length, { timeout: 20_000 }).toBe(3);
  return t.gateway.db.artifacts.sealed(id);
}

function expectSealedCiphertext(object: Buffer, keyMode: 1 | 2 | 3): void {
  expect(object.subarray(0, 8).toString('latin1')).toBe('\x89CVREC\r\n');
  const { header } = parseHeader(object);
  expect(header).toMatchObject({ version: 2, sampleFormat: 'none', channels: 0, sampleRate: 0, contentType: 'application/json' });
  expect(object[15]).toBe(keyMode);
  for (const word of SECRET_WORDS) expect(object.includes(word), word).toBe(false);
}

/** How many rows are staged for the call (entries, events), straight from PostgreSQL. */
async function stagedCounts(callId: string): Promise<[number, number]> {
  const client = new pg.Client({ connectionString: t.databaseUrl });
  await client.connect();
  try {
    const count = async (table: string) => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE call_id = $1`, [callId])).rows[0]!.n);
    return [await count('call_transcript_entries'), await count('call_events')];
  } finally {
    await client.end();
  }
}

/** The staged rows as PostgreSQL holds them: text '' and data {}, the posted content only in `sealed` (ciphertext). */
async function expectStagedRowsSealed(callId: string, entryCount: number): Promise<void> {
  const client = new pg.Client({ connectionString: t.databaseUrl });
  await client.connect();
  try {
    const entries = (await client.query<{ text: string; sealed: Buffer; key_id: string }>('SELECT text, sealed, key_id FROM call_transcript_entries WHERE call_id = $1', [callId])).rows;
    const events = (await client.query<{ data: unknown; sealed: Buffer; key_id: string }>('SELECT data, sealed, key_id FROM call_events WHERE call_id = $1', [callId])).rows;
    expect(entries).toHaveLength(entryCount);
    expect(events).toHaveLength(1);
    for (const row of [...entries, ...events]) {
      expect(row.key_id).toEqual(expect.any(String));
      expect(row.sealed.length).toBeGreaterThan(28);
      for (const word of SECRET_WORDS) expect(row.sealed.includes(word), word).toBe(false);
    }
    expect(entries.map((r) => r.text)).toEqual(entries.map(() => ''));
    expect(events.map((r) => r.data)).toEqual([{}]);
  } finally {
    await client.end();
  }
}

/** A live Twilio call, `entries` and the function call posted while it streams, then ended. */
async function liveCallWithArtifacts(recording: Record<string, unknown> | undefined, entries: unknown[]): Promise<{ callSid: string; whileLive: Response }> {
  const stream = await RawTwilioStream.open(t, t.accounts[0]!);
  stream.start(recording ? { recording: JSON.stringify(recording) } : {});
  stream.media(0, 500, { inbound: 440, outbound: 1000 });
  await stream.flushed(t, 'acme', 500);
  expect((await post(`/calls/${stream.callSid}/transcript`, { entries })).status).toBe(201);
  expect((await post(`/calls/${stream.callSid}/events`, { events: [functionCall] })).status).toBe(201);
  // Staged until the call ends: nothing sealed yet, and the staged rows hold no posted word either.
  expect(await t.gateway.db.artifacts.sealed(await callDbId(stream.callSid))).toEqual([]);
  await expectStagedRowsSealed(await callDbId(stream.callSid), entries.length);
  const whileLive = await api(t, `/calls/${stream.callSid}/transcript`);
  stream.media(500, 1000, { inbound: 440, outbound: 1000 });
  await stream.flushed(t, 'acme', 1000);
  stream.stop();
  expect((await stream.closed).code).toBe(1000);
  return { callSid: stream.callSid, whileLive };
}

const firstEntries = [entry('Zanzibar pineapple please', '2026-12-01T14:30:22.123456Z'), entry('Kilimanjaro it is', '2026-12-01T14:30:23.000001Z', 'bot')];

describe('server key mode', () => {
  let callSid: string;

  beforeAll(async () => {
    const placed = await liveCallWithArtifacts(undefined, firstEntries);
    callSid = placed.callSid;
    // While live the server reads its own staging: served as JSON.
    expect(placed.whileLive.status).toBe(200);
  });

  test('the ended call’s three documents are ciphertext objects in S3 (no posted word in their bytes); the staged rows are gone', async () => {
    const sealed = await sealedOf(callSid);
    expect(sealed.map((s) => s.kind)).toEqual(['events', 'metadata', 'transcript']);
    const [recording] = (await t.gateway.db.recordings.list('acme', { callSid, page: 0, limit: 10 })).rows;
    for (const s of sealed) {
      expect(s).toMatchObject({ keyMode: 'server', keyId: expect.any(String), bucket: t.bucket });
      // Next to the recording's object.
      expect(s.objectKey.slice(0, s.objectKey.lastIndexOf('/'))).toBe(recording!.objectKey.slice(0, recording!.objectKey.lastIndexOf('/')));
      const object = await objectBytes(s.objectKey);
      expect(object.length).toBe(s.sizeBytes);
      expectSealedCiphertext(object, 1);
    }
    const id = await callDbId(callSid);
    expect(await stagedCounts(id)).toEqual([0, 0]);
    // The repository still reads everything posted (what other writers and readers use), now from the sealed objects.
    expect((await t.gateway.db.artifacts.transcript(id)).map((e) => e.text)).toEqual(['Zanzibar pineapple please', 'Kilimanjaro it is']);
    expect((await t.gateway.db.artifacts.events(id, 'function_call')).map((e) => e.data['function_name'])).toEqual(['lookup_quasar']);
  });

  test('GET serves the documents decrypted: transcript, events (with the function call), metadata', async () => {
    const transcript = await (await api(t, `/calls/${callSid}/transcript`)).json();
    expect(transcript.entries.map((e: { text: string }) => e.text)).toEqual(['Zanzibar pineapple please', 'Kilimanjaro it is']);
    expect(transcript.end_time).not.toBeNull();
    const events = await (await api(t, `/calls/${callSid}/events`)).json();
    expect(events.events.find((e: { type: string }) => e.type === 'function_call')).toMatchObject({
      function_name: 'lookup_quasar',
      arguments: { account: 'xylophone-42' },
      result: { status: 'marmalade' },
      source: 'posted',
    });
    expect(events.events.filter((e: { type: string }) => e.type === 'transcript_entry')).toHaveLength(2);
    const metadata = await (await api(t, `/calls/${callSid}/metadata`)).json();
    expect(metadata).toMatchObject({ transcript_entries: 2, function_calls: [{ function_name: 'lookup_quasar' }], recording: { key_mode: 'server' } });
  });

  test('an entry posted after the call is sealed again at once: new objects, the old ones deleted, nothing staged', async () => {
    const before = await sealedOf(callSid);
    const res = await post(`/calls/${callSid}/transcript`, { entries: [entry('Zanzibar again', '2026-12-01T14:30:25.000000Z')] });
    expect(res.status).toBe(201);
    const after = await t.gateway.db.artifacts.sealed(await callDbId(callSid));
    expect(after.map((s) => s.objectKey).some((k) => before.some((b) => b.objectKey === k))).toBe(false);
    for (const s of before) expect(await objectExists(s.objectKey)).toBe(false);
    for (const s of after) expectSealedCiphertext(await objectBytes(s.objectKey), 1);
    expect(await stagedCounts(await callDbId(callSid))).toEqual([0, 0]);
    const transcript = await (await api(t, `/calls/${callSid}/transcript`)).json();
    expect(transcript.entries.map((e: { text: string }) => e.text)).toEqual(['Zanzibar pineapple please', 'Kilimanjaro it is', 'Zanzibar again']);
    // The function call survived the re-seal, as posted.
    const metadata = await (await api(t, `/calls/${callSid}/metadata`)).json();
    expect(metadata.function_calls).toEqual([
      { timestamp: '2026-12-01T14:30:24.000100Z', function_name: 'lookup_quasar', arguments: { account: 'xylophone-42' }, result: { status: 'marmalade' }, call_id: 'call_1' },
    ]);
  });

  test('a call without a recording is sealed too (server key): a later POST seals it', async () => {
    const placed = await placeCall(t, { recording: { enabled: false } });
    const res = await post(`/calls/${placed.callSid}/transcript`, { entries: [entry('Zanzibar unrecorded', '2026-12-01T14:30:22.000000Z')] });
    expect(res.status).toBe(201);
    const sealed = await sealedOf(placed.callSid);
    for (const s of sealed) expectSealedCiphertext(await objectBytes(s.objectKey), 1);
    const transcript = await (await api(t, `/calls/${placed.callSid}/transcript`)).json();
    expect(transcript.entries.map((e: { text: string }) => e.text)).toEqual(['Zanzibar unrecorded']);
  });
});

describe.each([
  ['a client key (HKDF, key mode 02)', randomBytes(32).toString('base64'), 2 as const],
  ['a passphrase (scrypt, key mode 03)', 'per-instance-key', 3 as const],
])('client key mode: %s', (_what, clientKey, keyModeByte) => {
  let callSid: string;
  let whileLive: Response;

  beforeAll(async () => {
    ({ callSid, whileLive } = await liveCallWithArtifacts({ enabled: true, key: clientKey }, firstEntries));
  });

  test('while the call is live, GET is a 409 ARTIFACTS_NOT_SEALED (they are sealed when it ends)', async () => {
    expect(whileLive.status).toBe(409);
    expect((await whileLive.json()).error.code).toBe('ARTIFACTS_NOT_SEALED');
  });

  test.each([
    ['transcript', 'transcript.json'],
    ['events', 'session_events.json'],
    ['metadata', 'call_metadata.json'],
  ])('GET /%s is a 302 to a short-lived URL of the ciphertext object; the CLI decrypts it to the JSON', async (kind, file) => {
    await sealedOf(callSid);
    const res = await api(t, `/calls/${callSid}/${kind}`);
    expect(res.status).toBe(302);
    expect(res.headers.get('x-callvault-key-mode')).toBe('client');
    const url = res.headers.get('location')!;
    expect(new URL(url).searchParams.get('X-Amz-Expires')).toBe('300');
    expect(url).toContain(`.${file}.cvr`);
    const object = Buffer.from(await (await fetch(url)).arrayBuffer());
    expectSealedCiphertext(object, keyModeByte);
    // The header carries the recording's salt (its data key is the recording's): the CLI needs only the client key.
    const input = join(work, `${keyModeByte}-${file}.cvr`);
    await writeFile(input, object);
    const out = join(work, `${keyModeByte}-${file}`);
    const { stderr } = await run(process.execPath, [CLI, 'decrypt', '--key', clientKey, input, out]);
    expect(stderr).toContain('application/json');
    const document = JSON.parse(await readFile(out, 'utf8'));
    const [recording] = (await t.gateway.db.recordings.list('acme', { callSid, page: 0, limit: 10 })).rows;
    expect(document).toMatchObject({ conversation_id: callSid, session_id: recording!.recordingSid, end_time: expect.stringMatching(/Z$/) });
    if (kind === 'transcript') {
      expect(document.entries).toEqual([
        { timestamp: '2026-12-01T14:30:22.123456Z', channel: 'caller', type: 'input', text: 'Zanzibar pineapple please', confidence: 0.9, duration_ms: 400 },
        { timestamp: '2026-12-01T14:30:23.000001Z', channel: 'bot', type: 'output', text: 'Kilimanjaro it is', confidence: 0.9, duration_ms: 400 },
      ]);
    } else if (kind === 'events') {
      const types = document.events.map((e: { type: string }) => e.type);
      expect(types).toEqual(expect.arrayContaining(['call_started', 'recording_started', 'function_call', 'transcript_entry', 'call_ended']));
      expect(document.events.find((e: { type: string }) => e.type === 'function_call')).toMatchObject({ function_name: 'lookup_quasar', result: { status: 'marmalade' } });
    } else {
      expect(document).toMatchObject({ transcript_entries: 2, function_calls: [{ function_name: 'lookup_quasar', call_id: 'call_1' }], recording: { key_mode: 'client' }, speech: null });
    }
    // A wrong key does not open it.
    const wrong = await run(process.execPath, [CLI, 'decrypt', '--key', 'per-instance-kez', input, join(work, 'wrong.json')]).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
    expect(wrong).not.toBe(0);
    expect(JSON.stringify(t.logs.lines)).not.toContain(clientKey);
  });

  test('a POST after the call ended is a 409 ARTIFACTS_SEALED, and stores nothing', async () => {
    await sealedOf(callSid);
    const res = await post(`/calls/${callSid}/transcript`, { entries: [entry('too late', '2026-12-01T14:31:00.000000Z')] });
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe('ARTIFACTS_SEALED');
    const events = await post(`/calls/${callSid}/events`, { events: [functionCall] });
    expect(events.status).toBe(409);
    expect(await stagedCounts(await callDbId(callSid))).toEqual([0, 0]);
    // Nor can the server read them back: only the client key opens them.
    await expect(t.gateway.db.artifacts.transcript(await callDbId(callSid))).rejects.toMatchObject({ code: 'ARTIFACTS_SEALED' });
  });

  test('another organisation gets 404 for each document', async () => {
    for (const kind of ['transcript', 'events', 'metadata']) expect((await api(t, `/calls/${callSid}/${kind}`, { org: 'globex' })).status).toBe(404);
  });
});

describe('DELETE removes the artifacts with the recording', () => {
  test.each([
    { mode: 'server key', recording: undefined, route: 'DELETE /calls/{callId}/recording' },
    { mode: 'client key', recording: { enabled: true, key: randomBytes(32).toString('base64') }, route: 'DELETE /calls/{callId}/recording' },
    { mode: 'server key', recording: undefined, route: 'DELETE /api/call-recordings/{id}' },
  ])('$mode, $route: the sealed objects and every row are gone', async ({ recording, route }) => {
    const { callSid } = await liveCallWithArtifacts(recording, firstEntries);
    const sealed = await sealedOf(callSid);
    const id = await callDbId(callSid);
    // Another organisation can neither read nor delete them.
    expect((await api(t, `/calls/${callSid}/transcript`, { org: 'globex' })).status).toBe(404);
    expect((await api(t, `/calls/${callSid}/recording`, { org: 'globex', method: 'DELETE' })).status).toBe(404);
    expect(await objectExists(sealed[0]!.objectKey)).toBe(true);
    const [row] = (await t.gateway.db.recordings.list('acme', { callSid, page: 0, limit: 10 })).rows;
    const path = route.startsWith('DELETE /calls') ? `/calls/${callSid}/recording` : `/api/call-recordings/${row!.recordingSid}`;
    expect((await api(t, path, { method: 'DELETE' })).status).toBe(204);
    for (const s of sealed) expect(await objectExists(s.objectKey)).toBe(false);
    expect(await t.gateway.db.artifacts.sealed(id)).toEqual([]);
    expect(await stagedCounts(id)).toEqual([0, 0]);
    expect(await t.gateway.db.artifacts.transcript(id)).toEqual([]);
    // The call is still known (its row stays), with nothing left of its transcript.
    const transcript = await api(t, `/calls/${callSid}/transcript`);
    expect(transcript.status).toBe(200);
    expect((await transcript.json()).entries).toEqual([]);
  });
});
