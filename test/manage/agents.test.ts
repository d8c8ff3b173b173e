/**
 * Agent-level recording policy: the API (key sealed, never returned, gone with the agent) and precedence
 * for a Twilio stream naming the agent in its `agentId` custom parameter: stream > agent > server default,
 * in every combination.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { toneAmplitude } from '../support/audio.js';
import { apiJson } from './support.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';

const CLIENT_KEY = randomBytes(32).toString('base64');

describe('the agents API', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway();
  });
  afterAll(async () => {
    await t?.dispose();
  });

  test('PUT creates then replaces; GET shows keySet but never the key; the key is stored sealed; DELETE removes it', async () => {
    const put = await apiJson(t, 'PUT', '/api/agents/agent-7', { options: { recording: { enabled: true, key: CLIENT_KEY, stereo: false } } });
    expect(put.status).toBe(201);
    const created = await put.text();
    expect(created).not.toContain(CLIENT_KEY);
    expect(JSON.parse(created).agent).toMatchObject({ agentId: 'agent-7', options: { recording: { enabled: true, stereo: false, keySet: true } } });
    const got = await apiJson(t, 'GET', '/api/agents/agent-7');
    const text = await got.text();
    expect(text).not.toContain(CLIENT_KEY);
    expect(JSON.parse(text).agent.options.recording).toEqual({ enabled: true, stereo: false, keySet: true });

    const client = new pg.Client({ connectionString: t.gateway.options.databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ sealed_key: Buffer }>(`SELECT sealed_key FROM agents WHERE agent_id = 'agent-7'`);
      expect(rows[0]!.sealed_key.includes(Buffer.from(CLIENT_KEY))).toBe(false);
      expect(rows[0]!.sealed_key.length).toBeGreaterThan(CLIENT_KEY.length);
      const replaced = await apiJson(t, 'PUT', '/api/agents/agent-7', { options: { recording: { enabled: false } } });
      expect(replaced.status).toBe(200);
      expect(((await replaced.json()) as any).agent.options.recording).toEqual({ enabled: false, keySet: false });
      expect((await client.query(`SELECT sealed_key FROM agents WHERE agent_id = 'agent-7'`)).rows[0].sealed_key).toBeNull();
      expect((await apiJson(t, 'DELETE', '/api/agents/agent-7')).status).toBe(204);
      expect((await client.query(`SELECT 1 FROM agents WHERE agent_id = 'agent-7'`)).rowCount).toBe(0);
    } finally {
      await client.end();
    }
    expect((await apiJson(t, 'GET', '/api/agents/agent-7')).status).toBe(404);
    expect((await apiJson(t, 'DELETE', '/api/agents/agent-7')).status).toBe(404);
  });

  test('PUT keeps an agentIdentity (the LiveKit participant identity of the agent) and GET shows it', async () => {
    const put = await apiJson(t, 'PUT', '/api/agents/agent-lk', { options: { recording: { enabled: true, stereo: true, agentIdentity: 'support-bot-7' } } });
    expect(put.status).toBe(201);
    const got = ((await (await apiJson(t, 'GET', '/api/agents/agent-lk')).json()) as any).agent.options.recording;
    expect(got).toEqual({ enabled: true, stereo: true, agentIdentity: 'support-bot-7', keySet: false });
    const policy = await t.gateway.db.agents.get('acme', 'agent-lk');
    expect(policy?.agentIdentity).toBe('support-bot-7');
    expect((await apiJson(t, 'DELETE', '/api/agents/agent-lk')).status).toBe(204);
  });

  test.each([
    ['an empty agentIdentity', { options: { recording: { enabled: true, agentIdentity: '' } } }, 'BAD_REQUEST'],
    ['a too-short key', { options: { recording: { enabled: true, key: 'hunter2' } } }, 'CLIENT_KEY_WEAK'],
    ['no enabled', { options: { recording: { stereo: true } } }, 'BAD_REQUEST'],
    ['an unknown field', { options: { recording: { enabled: true, mono: true } } }, 'BAD_REQUEST'],
    ['no options', { recording: { enabled: true } }, 'BAD_REQUEST'],
  ])('PUT with %s is 400', async (_name, body, code) => {
    const res = await apiJson(t, 'PUT', '/api/agents/agent-bad', body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe(code);
  });

  test("another organisation's agent is 404 for GET and DELETE; its PUT makes its own agent", async () => {
    await apiJson(t, 'PUT', '/api/agents/shared-name', { options: { recording: { enabled: false } } });
    expect((await apiJson(t, 'GET', '/api/agents/shared-name', undefined, 'globex')).status).toBe(404);
    expect((await apiJson(t, 'DELETE', '/api/agents/shared-name', undefined, 'globex')).status).toBe(404);
    expect((await apiJson(t, 'PUT', '/api/agents/shared-name', { options: { recording: { enabled: true } } }, 'globex')).status).toBe(201);
    expect(((await (await apiJson(t, 'GET', '/api/agents/shared-name')).json()) as any).agent.options.recording.enabled).toBe(false);
  });

  test('every status the routes answered here is documented in the OpenAPI document', async () => {
    expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
  });
});

type Layer = { enabled: boolean; stereo?: boolean; key?: string } | null;
const AGENT_LAYERS: [string, Layer][] = [
  ['no agent policy', null],
  ['agent disabled', { enabled: false }],
  ['agent enabled, mono, client key', { enabled: true, stereo: false, key: CLIENT_KEY }],
];
const STREAM_LAYERS: [string, Layer][] = [
  ['no stream options', null],
  ['stream enabled', { enabled: true }],
  ['stream disabled', { enabled: false }],
];
const combos = AGENT_LAYERS.flatMap(([agentName, agent]) => STREAM_LAYERS.map(([streamName, stream]) => [agentName, streamName, agent, stream] as const));

describe.each([
  ['server default enabled', { enabled: true, stereo: true }],
  ['server default disabled', { enabled: false, stereo: true }],
] as const)('precedence with the %s', (_name, defaults) => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway({ recording: { sampleRate: 16000, defaults } });
  });
  afterAll(async () => {
    await t?.dispose();
  });

  test.each(combos)('%s, %s', async (_a, _s, agent, stream) => {
    const agentId = `agent-${randomBytes(4).toString('hex')}`;
    if (agent) expect((await apiJson(t, 'PUT', `/api/agents/${agentId}`, { options: { recording: agent } })).status).toBe(201);
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ agentId, ...(stream ? { recording: JSON.stringify(stream) } : {}) });
    s.media(0, 400, { inbound: 440, outbound: 880 });
    await s.flushed(t, 'acme', 400);
    s.stop();
    await s.closed;
    const enabled = stream?.enabled ?? agent?.enabled ?? defaults.enabled;
    const stereo = stream?.stereo ?? agent?.stereo ?? defaults.stereo;
    const key = stream?.key ?? agent?.key;
    if (!enabled) {
      expect(await recordingsOfCall(t, 'acme', s.callSid)).toEqual([]);
      return;
    }
    await expect.poll(async () => (await recordingsOfCall(t, 'acme', s.callSid))[0]?.status).toBe('completed');
    const [row] = await recordingsOfCall(t, 'acme', s.callSid);
    expect({ keyMode: row!.keyMode, channels: row!.channels }).toEqual({ keyMode: key ? 'client' : 'server', channels: stereo ? 2 : 1 });
    // The recording opens with the agent's key (client mode) or the master key, and holds the call's audio.
    const rec = await fetchRecording(t, row!, key);
    expect(toneAmplitude(rec.channelSamples[0]!.subarray(320, 6080), 16000, 440)).toBeGreaterThan(stereo ? 10000 : 4000);
  });
});
