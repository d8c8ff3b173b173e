/**
 * The web console in a real browser: Debian's Chromium (installed by scripts/peers.mjs, `ensure chromium`)
 * driven by playwright-core, against a real gateway that recorded a real call (a 440 Hz caller, a 1000 Hz bot).
 * Signs in with the API key, finds the call by searching, opens it, plays it through the signed playback URL,
 * seeks to 2 s (the audio element's position is there and the transcript entry at 2 s is highlighted), deletes it
 * after confirming, and sees it gone (the API answers 404). A screenshot is kept under test-artifacts/.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ensurePeer } from '../../scripts/peers.mjs';
import { CONSOLE_CSP } from '../../dist/api/index.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectAnsweredStatusesDocumented } from '../support/openapi.js';
import { api, apiKeyOf, inProgressRecording, placeCall, recordingPath, storeRecording } from '../api/support.js';
import { generateTone, pcm16ToBytes } from '../support/audio.js';
import { RawTwilioStream } from '../support/twilio.js';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // No speaker here and no human to click: media may start without a user gesture.
  '--autoplay-policy=no-user-gesture-required',
];
const ARTIFACTS = resolve('test-artifacts');

const TTL_SECONDS = 60;
let clockOffsetMs = 0;
let t: TestGateway;
let callSid: string;
let otherCallSid: string;
let userDataDir: string;
let context: BrowserContext;
let page: Page;
let apiKey: string;
const requestedUrls: string[] = [];
const pageProblems: string[] = [];

beforeAll(async () => {
  const executablePath = await ensurePeer('chromium');
  t = await startTestGateway({ playbackUrlTtlSeconds: TTL_SECONDS, now: () => Date.now() + clockOffsetMs });
  apiKey = apiKeyOf(t, 'acme');
  const placed = await placeCall(t, { durationMs: 4000 });
  expect(placed.closeCode).toBe(1000);
  callSid = placed.callSid;
  otherCallSid = (await placeCall(t, { durationMs: 400 })).callSid;
  const listed = await (await api(t, `/api/call-recordings?callSid=${callSid}`)).json();
  const start = Date.parse(listed.recordings[0].startTime);
  const at = (ms: number) => new Date(start + ms).toISOString();
  const entries = [
    { timestamp: at(500), channel: 'caller', type: 'input', text: 'hello, I have a question', confidence: 0.9, duration_ms: 800 },
    { timestamp: at(2000), channel: 'bot', type: 'output', text: 'the answer at two seconds', confidence: null, duration_ms: 900 },
    { timestamp: at(3300), channel: 'caller', type: 'input', text: 'thank you, goodbye', confidence: 0.8, duration_ms: 500 },
  ];
  const posted = await fetch(`${t.httpUrl}/calls/${callSid}/transcript`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ entries }),
  });
  expect(posted.status).toBe(201);

  userDataDir = await mkdtemp(join(tmpdir(), 'callvault-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, { executablePath, args: CHROMIUM_ARGS, headless: true, viewport: { width: 1280, height: 1000 } });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('request', (request) => requestedUrls.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') pageProblems.push(message.text());
  });
  page.on('pageerror', (err) => pageProblems.push(err.message));
  page.on('response', (response) => {
    if (response.status() >= 400) pageProblems.push(`${response.status()} ${response.url()}`);
  });
}, 300_000);

afterAll(async () => {
  await context?.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  await t?.dispose();
});

describe('the console in Chromium', () => {
  test('is served with a strict Content-Security-Policy and no inline script', async () => {
    const res = await fetch(`${t.httpUrl}/console`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toContain('unsafe-inline');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await res.text();
    // Every script is a file of the gateway's: none inline.
    expect([...html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)].map((m) => m[1]!.trim())).toEqual(['']);
    for (const file of ['app.js', 'style.css']) expect((await fetch(`${t.httpUrl}/console/${file}`)).status).toBe(200);
    expect((await fetch(`${t.httpUrl}/console/secrets.json`)).status).toBe(404);
    expect((await fetch(`${t.httpUrl}/console/`, { redirect: 'manual' })).headers.get('location')).toBe('../console');
  });

  test('sign in, find the call, play it, seek to 2 s with the transcript following, delete it', async () => {
    await page.goto(`${t.httpUrl}/console`);
    await page.locator('#sign-in').waitFor({ state: 'visible' });

    // A wrong key is refused and not kept.
    await page.fill('#api-key', 'not-a-key');
    await page.click('#sign-in-form button[type=submit]');
    await expect.poll(() => page.textContent('#sign-in-error')).toContain('Sign-in failed');
    expect(await page.evaluate(() => sessionStorage.getItem('callvault.apiKey'))).toBeNull();

    await page.fill('#api-key', apiKey);
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#list').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => sessionStorage.getItem('callvault.apiKey'))).toBe(apiKey);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    // Both calls are listed before searching.
    await expect.poll(() => page.locator('#calls tbody tr').count()).toBe(2);

    await page.fill('#search', callSid);
    await page.click('#filters button[type=submit]');
    await expect.poll(() => page.locator('#calls tbody tr').count()).toBe(1);
    await expect.poll(() => page.locator('#calls tbody tr').first().getAttribute('data-call-sid')).toBe(callSid);
    await page.click(`#calls tbody a[href="#/calls/${callSid}"]`);

    await page.locator('#call').waitFor({ state: 'visible' });
    expect(await page.textContent('#call-title')).toBe(callSid);
    await expect.poll(() => page.locator('#transcript li').count()).toBe(3);
    await expect.poll(() => page.textContent('#metadata')).toContain('recording.channels');
    await expect.poll(() => page.locator('#events tbody tr').count()).toBeGreaterThan(3);
    expect(await page.textContent('#events')).toContain('recording_started');
    // The waveform of each channel, computed from the audio: the caller's and the bot's tones both show.
    await page.locator('#waveforms[data-ready=true]').waitFor();
    expect(await page.locator('#waveforms canvas').count()).toBe(2);
    const inked = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#waveforms canvas')).map((c) => {
        const canvas = c as HTMLCanvasElement;
        const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) painted++;
        return painted / (canvas.width * canvas.height);
      }),
    );
    // A 0.4-of-full-scale tone fills about 40 % of each canvas' height over the whole call.
    for (const share of inked) expect(share).toBeGreaterThan(0.25);

    // Playback through the signed URL: the element's source is a /playback/ URL of this gateway, no key in it.
    const src = await page.getAttribute('#player', 'src');
    expect(src).toMatch(new RegExp(`^${t.httpUrl}/playback/[0-9a-f-]{36}\\?org=acme&track=stereo&exp=\\d+&sig=`));
    await expect.poll(() => page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).duration)).toBeCloseTo(4, 1);
    await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).play());
    await expect.poll(() => page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).currentTime)).toBeGreaterThan(0.3);
    await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).pause());

    // Seek to 2 s by clicking the transcript entry at 2 s.
    await page.click('#transcript li:has-text("the answer at two seconds")');
    await expect.poll(() => page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).currentTime)).toBeCloseTo(2, 2);
    await expect.poll(() => page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).seeking)).toBe(false);
    const highlighted = () => page.locator('#transcript li.current').allTextContents();
    await expect.poll(highlighted).toEqual([expect.stringContaining('the answer at two seconds')]);
    expect(await page.getAttribute('#transcript li.current', 'aria-current')).toBe('true');

    // Back to 0.6 s through the player itself: the highlight follows playback to the first entry.
    await page.evaluate(() => {
      (document.getElementById('player') as HTMLAudioElement).currentTime = 0.6;
    });
    await expect.poll(highlighted).toEqual([expect.stringContaining('hello, I have a question')]);
    // And on from 2 s: it plays past 2 s, so the seek fetched real audio there (a Range request of the signed URL).
    await page.click('#transcript li:has-text("the answer at two seconds")');
    await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).play());
    await expect.poll(() => page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).currentTime)).toBeGreaterThan(2.3);
    await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).pause());
    await page.evaluate(() => {
      (document.getElementById('player') as HTMLAudioElement).currentTime = 2;
    });
    await expect.poll(highlighted).toEqual([expect.stringContaining('the answer at two seconds')]);

    await mkdir(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, `console-call-${Date.now()}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`console screenshot: ${shot}\n`);

    // Delete, after confirming; cancelling first deletes nothing.
    await page.click('#delete');
    await page.locator('#confirm-delete').waitFor({ state: 'visible' });
    await page.click('#cancel-delete');
    expect((await api(t, recordingPath(callSid), { method: 'HEAD' })).status).toBe(200);
    await page.click('#delete');
    await page.click('#confirm-delete-button');
    await page.locator('#list').waitFor({ state: 'visible' });
    await expect.poll(() => page.textContent('#notice')).toContain(`Deleted the recordings of ${callSid}`);
    await page.fill('#search', callSid);
    await page.click('#filters button[type=submit]');
    await page.locator('#empty').waitFor({ state: 'visible' });
    expect(await page.locator('#calls tbody tr').count()).toBe(0);
    expect((await api(t, recordingPath(callSid))).status).toBe(404);
    // The other call is still there.
    await page.fill('#search', '');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => page.locator('#calls tbody tr').count()).toBe(1);
    expect(await page.locator('#calls tbody tr').first().getAttribute('data-call-sid')).toBe(otherCallSid);

    // The key never went into a URL, and the page broke no rule of its CSP.
    expect(requestedUrls.length).toBeGreaterThan(10);
    expect(requestedUrls.filter((u) => u.includes(apiKey))).toEqual([]);
    expect(requestedUrls.some((u) => u.includes('/playback/'))).toBe(true);
    // Only the wrong key's 401 is an error the page logged.
    expect(pageProblems.filter((p) => !/401/.test(p))).toEqual([]);
  }, 120_000);

  test('a live call shows start, stop, pause and resume, and each acts on the call', async () => {
    const tones = { inbound: 440, outbound: 1000 };
    const stream = await RawTwilioStream.open(t, t.accounts[0]!);
    stream.start({ recording: JSON.stringify({ enabled: false }) });
    stream.media(0, 400, tones);
    await stream.flushed(t, 'acme', 400);
    await page.evaluate((hash) => {
      window.location.hash = hash;
    }, `#/calls/${stream.callSid}`);
    await page.locator('#live-controls').waitFor({ state: 'visible' });
    expect(await page.textContent('#call-title')).toBe(stream.callSid);

    await page.click('#live-controls [data-action=start]');
    await expect.poll(() => page.textContent('#notice')).toBe('start: done');
    const recording = await inProgressRecording(t, 'acme', stream.callSid);
    stream.media(400, 800, tones);
    await stream.flushed(t, 'acme', 800);
    await page.click('#live-controls [data-action=pause]');
    await expect.poll(() => page.textContent('#notice')).toBe('pause: done');
    stream.media(800, 1200, tones);
    await stream.flushed(t, 'acme', 1200);
    await page.click('#live-controls [data-action=resume]');
    await expect.poll(() => page.textContent('#notice')).toBe('resume: done');
    stream.media(1200, 1600, tones);
    await stream.flushed(t, 'acme', 1600);
    await page.click('#live-controls [data-action=stop]');
    await expect.poll(() => page.textContent('#notice')).toBe('stop: done');

    // What the buttons did, read back from the API: one recording, completed, with the one pause.
    let stored: any;
    await expect
      .poll(async () => {
        stored = (await (await api(t, `/api/call-recordings/${recording.recordingSid}`)).json()).recording;
        return stored.status;
      })
      .toBe('completed');
    expect(stored.metadata.pauses).toHaveLength(1);
    expect(stored.metadata.pauses[0]).toMatchObject({ behavior: 'silence' });
    stream.stop();
    await stream.closed;
  }, 60_000);

  test('a mono call has one mixed waveform; a client-key call says the gateway cannot decrypt its audio', async () => {
    const mono = await placeCall(t, { durationMs: 1000, recording: { enabled: true, stereo: false } });
    const client = await placeCall(t, { durationMs: 1000, recording: { enabled: true, stereo: true, key: randomBytes(32).toString('hex') } });
    await expect.poll(async () => (await api(t, recordingPath(client.callSid))).status).toBe(302);
    await page.evaluate((hash) => {
      window.location.hash = hash;
    }, `#/calls/${mono.callSid}`);
    await page.locator('#waveforms[data-ready=true]').waitFor();
    expect(await page.locator('#waveforms .channel-label').allTextContents()).toEqual(['mixed']);
    await expect.poll(() => page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).duration)).toBeCloseTo(1, 1);

    await page.evaluate((hash) => {
      window.location.hash = hash;
    }, `#/calls/${client.callSid}`);
    await expect.poll(() => page.textContent('#player-note')).toContain('the gateway cannot decrypt this recording');
    expect(await page.getAttribute('#player', 'src')).toBeNull();
    expect(await page.locator('#waveforms canvas').count()).toBe(0);
    // Its metadata, transcript and events are sealed under the client key too: the page says so, and shows none.
    await expect.poll(() => page.textContent('#metadata')).toContain('sealed under its client key');
    expect(await page.locator('#events tbody tr').count()).toBe(0);
    expect(await page.locator('#transcript li').count()).toBe(0);
  }, 60_000);

  test('pages of 20, and the status and source filters, agree with the list API', async () => {
    const pcm = pcm16ToBytes(generateTone({ frequency: 440, amplitude: 8000, samples: 800, sampleRate: 8000 }));
    for (let i = 0; i < 21; i++) await storeRecording(t, { pcm, sampleRate: 8000, channels: 1 });
    const totalOf = async (query: string) => (await (await api(t, `/api/call-recordings?limit=1${query}`)).json()).total as number;
    const total = await totalOf('');
    expect(total).toBeGreaterThan(21);
    const rows = () => page.locator('#calls tbody tr').count();
    await page.evaluate(() => {
      window.location.hash = '#/';
    });
    await page.locator('#list').waitFor({ state: 'visible' });
    await page.fill('#search', '');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => page.textContent('#page-info')).toBe(`page 1 of ${Math.ceil(total / 20)} (${total} recordings)`);
    expect(await rows()).toBe(20);
    expect(await page.isDisabled('#prev')).toBe(true);
    await page.click('#next');
    await expect.poll(() => page.textContent('#page-info')).toContain('page 2 of');
    expect(await rows()).toBe(Math.min(20, total - 20));
    await page.click('#prev');
    await expect.poll(() => page.textContent('#page-info')).toContain('page 1 of');

    await page.selectOption('#source', 'livekit');
    await page.locator('#empty').waitFor({ state: 'visible' });
    expect(await rows()).toBe(0);
    await page.selectOption('#source', 'gateway');
    await page.selectOption('#status', 'completed');
    const completed = await totalOf('&source=gateway&status=completed');
    await expect.poll(() => page.textContent('#page-info')).toBe(`page 1 of ${Math.ceil(completed / 20)} (${completed} recordings)`);
    expect(await page.locator('#calls tbody tr td:nth-child(4)').allTextContents()).toEqual(Array(Math.min(20, completed)).fill('completed'));
    await page.selectOption('#status', 'failed');
    await page.locator('#empty').waitFor({ state: 'visible' });
    expect(await totalOf('&status=failed')).toBe(0);
    await page.selectOption('#status', '');
    await page.selectOption('#source', '');
  }, 60_000);

  test('an expired playback URL: the player’s next request is refused (403 PLAYBACK_URL_EXPIRED) and the page gets a new URL', async () => {
    // Two minutes of stereo (7.7 MB): the player holds only the start after loading its metadata, so a seek
    // near the end is a new Range request of the signed URL.
    const rate = 16000;
    const left = generateTone({ frequency: 440, amplitude: 8000, samples: 120 * rate, sampleRate: rate });
    const interleaved = new Int16Array(left.length * 2);
    for (let i = 0; i < left.length; i++) interleaved[2 * i] = interleaved[2 * i + 1] = left[i]!;
    const stored = await storeRecording(t, { pcm: pcm16ToBytes(interleaved), sampleRate: rate, channels: 2 });
    // One transcript entry every 3 s: more than the transcript box shows at once.
    const start = Date.parse((await (await api(t, `/api/call-recordings?callSid=${stored.callSid}`)).json()).recordings[0].startTime);
    const entries = Array.from({ length: 40 }, (_, i) => ({
      timestamp: new Date(start + i * 3000).toISOString(),
      channel: i % 2 === 0 ? 'caller' : 'bot',
      type: i % 2 === 0 ? 'input' : 'output',
      text: `entry number ${i} at ${i * 3} s`,
    }));
    const posted = await fetch(`${t.httpUrl}/calls/${stored.callSid}/transcript`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ entries }),
    });
    expect(posted.status).toBe(201);
    await page.evaluate((hash) => {
      window.location.hash = hash;
    }, `#/calls/${stored.callSid}`);
    const player = () => page.evaluate(() => {
      const p = document.getElementById('player') as HTMLAudioElement;
      return { duration: p.duration, currentTime: p.currentTime, readyState: p.readyState };
    });
    await expect.poll(async () => (await player()).duration).toBeCloseTo(120, 1);
    const first = (await page.getAttribute('#player', 'src'))!;
    // The media element's responses have no body for the page to read back: their statuses are enough.
    const refusals: number[] = [];
    const onResponse = (response: import('playwright-core').Response) => {
      if (response.url() === first && response.status() === 403) refusals.push(response.status());
    };
    page.on('response', onResponse);
    try {
      // The gateway's clock passes the URL's expiry; then the listener seeks near the end.
      clockOffsetMs = (TTL_SECONDS + 1) * 1000;
      await page.evaluate(() => {
        (document.getElementById('player') as HTMLAudioElement).currentTime = 110;
      });
      await expect.poll(() => page.getAttribute('#player', 'src')).not.toBe(first);
      await expect.poll(() => page.textContent('#player-note')).toContain('renewed');
      expect(refusals.length).toBeGreaterThan(0);
      const refused = await fetch(first, { headers: { range: 'bytes=0-0' } });
      expect(refused.status).toBe(403);
      expect((await refused.json()).error.code).toBe('PLAYBACK_URL_EXPIRED');
      // Playing on from where the listener was, from the new URL.
      await expect.poll(async () => (await player()).duration).toBeCloseTo(120, 1);
      await expect.poll(async () => (await player()).currentTime).toBeCloseTo(110, 0);
      // The transcript followed: the entry at 108 s is the highlighted one, scrolled into the box's view.
      await expect.poll(() => page.locator('#transcript li.current').allTextContents()).toEqual([expect.stringContaining('entry number 36 at 108 s')]);
      const view = await page.evaluate(() => {
        const box = document.getElementById('transcript')!;
        const item = box.querySelector('li.current')!;
        const b = box.getBoundingClientRect();
        const i = item.getBoundingClientRect();
        return { scrollTop: box.scrollTop, inside: i.top >= b.top && i.bottom <= b.bottom, overflow: box.scrollHeight > box.clientHeight };
      });
      expect(view).toMatchObject({ inside: true, overflow: true });
      expect(view.scrollTop).toBeGreaterThan(0);
      await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).play());
      await expect.poll(async () => (await player()).currentTime).toBeGreaterThan(110.3);
      await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).pause());
    } finally {
      page.off('response', onResponse);
      clockOffsetMs = 0;
    }
  }, 60_000);

  test('signing out forgets the key', async () => {
    await page.click('#sign-out');
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => sessionStorage.getItem('callvault.apiKey'))).toBeNull();
  });

  test('every status answered is documented', async () => {
    expect(await expectAnsweredStatusesDocumented(t.gateway)).toBeGreaterThan(5);
  });
});
