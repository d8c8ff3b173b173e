/**
 * Mid-call control through the HTTP API: start → audio → pause → audio → resume → audio → stop, each action
 * landing at an exact media point; the stored audio shows which spans reached storage.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { rms, sliceMs, toneAmplitude } from '../support/audio.js';
import { fetchRecording, recordingsOfCall, startTestGateway, type TestGateway } from '../support/gateway.js';
import { RawTwilioStream } from '../support/twilio.js';
import { apiJson } from './support.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';

const RATE = 16000;
let t: TestGateway;

beforeAll(async () => {
  t = await startTestGateway({ recording: { sampleRate: RATE, defaults: { enabled: true, stereo: true } } });
});
afterAll(async () => {
  await t?.dispose();
});

async function ok(res: Response, status: number): Promise<Record<string, any>> {
  const body = (await res.json()) as Record<string, any>;
  expect({ status: res.status, body }).toMatchObject({ status });
  return body;
}

async function completed(callSid: string, count: number) {
  await expect.poll(async () => (await recordingsOfCall(t, 'acme', callSid)).filter((r) => r.status === 'completed').length).toBe(count);
  return (await recordingsOfCall(t, 'acme', callSid)).reverse();
}

describe('start, pause, resume, stop over HTTP', () => {
  test.each([
    ['silence', 3000, [[0, 1000, 440], [1000, 2000, 0], [2000, 3000, 880]]],
    ['skip', 2000, [[0, 1000, 440], [1000, 2000, 880]]],
  ] as const)('pause with %s (%i ms stored): the paused span is silent or absent, nothing of it stored', async (behavior, durationMs, periods) => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ recording: JSON.stringify({ enabled: false }) });
    // Before the start: never recorded (not retroactive).
    s.media(0, 500, { inbound: 300, outbound: 300 });
    await s.flushed(t, 'acme', 500);
    const started = await ok(await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: s.callSid, recordingTrack: 'both' }), 201);
    const sid = started['recording'].recordingSid as string;
    expect(started['recording']).toMatchObject({ callSid: s.callSid, source: 'gateway', status: 'in-progress', keyMode: 'server' });
    s.media(500, 1500, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 1500);
    const paused = await ok(await apiJson(t, 'POST', `/api/call-recordings/${sid}/pause`, { behavior }), 200);
    expect(paused).toMatchObject({ paused: true, pause: { behavior, fromMediaMs: 1500 } });
    // A card number being read out.
    s.media(1500, 2500, { inbound: 660, outbound: 660 });
    await s.flushed(t, 'acme', 2500);
    await ok(await apiJson(t, 'POST', `/api/call-recordings/${sid}/resume`), 200);
    s.media(2500, 3500, { inbound: 880, outbound: 880 });
    await s.flushed(t, 'acme', 3500);
    const stopped = await ok(await apiJson(t, 'POST', '/api/call-recordings/stop', { recordingSid: sid }), 200);
    expect(stopped['stopped']).toEqual([expect.objectContaining({ recordingSid: sid, status: 'completed', durationMs })]);
    s.media(3500, 4000, { inbound: 300, outbound: 300 });
    s.stop();
    await s.closed;
    const [row] = await completed(s.callSid, 1);
    expect(row!.recordingSid).toBe(sid);
    expect(row!.durationMs).toBe(durationMs);
    expect(row!.metadata['pauses']).toEqual([expect.objectContaining({ behavior, fromMediaMs: 1500, toMediaMs: 2500 })]);
    const rec = await fetchRecording(t, row!);
    for (const channel of rec.channelSamples) {
      expect(toneAmplitude(channel, RATE, 660)).toBeLessThan(30);
      expect(toneAmplitude(channel, RATE, 300)).toBeLessThan(30);
      for (const [from, to, hz] of periods) {
        if (hz === 0) expect(rms(sliceMs(channel, RATE, from + 5, to - 5))).toBe(0);
        else expect(toneAmplitude(sliceMs(channel, RATE, from + 20, to - 20), RATE, hz)).toBeGreaterThan(10000);
      }
    }
  });

  test('recordingTrack inbound records only the caller; stop by callSid stops it', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ recording: JSON.stringify({ enabled: false }) });
    await s.flushed(t, 'acme', 0);
    await ok(await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: s.callSid, recordingTrack: 'inbound' }), 201);
    s.media(0, 1000, { inbound: 440, outbound: 1000 });
    await s.flushed(t, 'acme', 1000);
    const stopped = await ok(await apiJson(t, 'POST', '/api/call-recordings/stop', { callSid: s.callSid }), 200);
    expect(stopped['stopped']).toHaveLength(1);
    s.stop();
    await s.closed;
    const [row] = await completed(s.callSid, 1);
    const rec = await fetchRecording(t, row!);
    expect(toneAmplitude(sliceMs(rec.channelSamples[0]!, RATE, 20, 980), RATE, 440)).toBeGreaterThan(10000);
    expect(rms(rec.channelSamples[1]!)).toBe(0);
  });
});

describe('refusals with stable codes', () => {
  test('start twice is 409 CONFLICT; pause twice and resume when not paused are 409; stop then pause is 409', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 200, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 200);
    const again = await ok(await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: s.callSid }), 409);
    expect(again['error'].code).toBe('CONFLICT');
    const [row] = await recordingsOfCall(t, 'acme', s.callSid);
    const sid = row!.recordingSid;
    expect((await ok(await apiJson(t, 'POST', `/api/call-recordings/${sid}/resume`), 409))['error'].code).toBe('CONFLICT');
    await ok(await apiJson(t, 'POST', `/api/call-recordings/${sid}/pause`, { behavior: 'skip' }), 200);
    expect((await ok(await apiJson(t, 'POST', `/api/call-recordings/${sid}/pause`, { behavior: 'skip' }), 409))['error'].code).toBe('CONFLICT');
    await ok(await apiJson(t, 'POST', '/api/call-recordings/stop', { recordingSid: sid }), 200);
    expect((await ok(await apiJson(t, 'POST', `/api/call-recordings/${sid}/pause`, {}), 409))['error']).toMatchObject({
      code: 'CONFLICT',
      details: { status: 'completed' },
    });
    expect((await ok(await apiJson(t, 'POST', '/api/call-recordings/stop', { callSid: s.callSid }), 404))['error'].code).toBe('NOT_FOUND');
    s.stop();
    await s.closed;
  });

  test.each([
    ['start on an unknown call', '/api/call-recordings/start', { callSid: 'CA00000000000000000000000000000000' }, 404, 'NOT_FOUND'],
    ['stop an unknown recording', '/api/call-recordings/stop', { recordingSid: 'CR00000000000000000000000000000000' }, 404, 'NOT_FOUND'],
    ['stop an unknown call', '/api/call-recordings/stop', { callSid: 'CA00000000000000000000000000000000' }, 404, 'NOT_FOUND'],
    ['pause an unknown recording', '/api/call-recordings/CR00000000000000000000000000000000/pause', {}, 404, 'NOT_FOUND'],
    ['stop with both ids', '/api/call-recordings/stop', { callSid: 'CA1', recordingSid: 'CR1' }, 400, 'BAD_REQUEST'],
    ['start with a bad track', '/api/call-recordings/start', { callSid: 'CA1', recordingTrack: 'left' }, 400, 'BAD_REQUEST'],
    ['start with a too-short key', '/api/call-recordings/start', { callSid: 'CA1', key: 'pass123' }, 400, 'CLIENT_KEY_WEAK'],
    ['pause with a bad behavior', '/api/call-recordings/CR00000000000000000000000000000000/pause', { behavior: 'mute' }, 400, 'BAD_REQUEST'],
  ])('%s', async (_name, path, body, status, code) => {
    expect((await ok(await apiJson(t, 'POST', path, body), status))['error'].code).toBe(code);
  });

  test('a call that ended is not active: start answers 404', async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start({ recording: JSON.stringify({ enabled: false }) });
    s.stop();
    await s.closed;
    await expect.poll(() => t.gateway.liveCall('acme', s.callSid)).toBeUndefined();
    expect((await ok(await apiJson(t, 'POST', '/api/call-recordings/start', { callSid: s.callSid }), 404))['error'].code).toBe('NOT_FOUND');
  });

  test("another organisation's live call and recording answer 404 on every control route", async () => {
    const s = await RawTwilioStream.open(t, t.accounts[0]!);
    s.start();
    s.media(0, 200, { inbound: 440, outbound: 440 });
    await s.flushed(t, 'acme', 200);
    const [row] = await recordingsOfCall(t, 'acme', s.callSid);
    const sid = row!.recordingSid;
    for (const [path, body] of [
      ['/api/call-recordings/start', { callSid: s.callSid }],
      ['/api/call-recordings/stop', { recordingSid: sid }],
      ['/api/call-recordings/stop', { callSid: s.callSid }],
      [`/api/call-recordings/${sid}/pause`, { behavior: 'silence' }],
      [`/api/call-recordings/${sid}/resume`, {}],
    ] as const) {
      const res = await apiJson(t, 'POST', path, body, 'globex');
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
    }
    expect(t.gateway.liveCall('acme', s.callSid)?.recording?.paused).toBe(false);
    s.stop();
    await s.closed;
  });
});

test('every status the routes answered in this file is documented in the OpenAPI document', async () => {
  expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(0);
});
