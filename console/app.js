// callvault web console: plain JavaScript, no framework, no build step, served from the gateway.
// The API key lives in this tab's sessionStorage; it is sent as a Bearer header and never put in a URL.
// Audio plays from a signed playback URL (POST /calls/{id}/playback-url), which needs no header.

const KEY_STORAGE = 'callvault.apiKey';
const PAGE_SIZE = 20;
// The page is served at <base>/console: the API lives at <base>/.
const API_BASE = new URL('./', window.location.href);

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

function apiUrl(path) {
  return new URL(path.replace(/^\//, ''), API_BASE);
}

async function api(path, { method = 'GET', body, artifact = false } = {}) {
  const headers = { authorization: `Bearer ${apiKey()}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  // A client-key call's transcript, events and metadata answer 302 to the encrypted object: not followed here.
  const res = await fetch(apiUrl(path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', redirect: artifact ? 'manual' : 'follow' });
  if (res.type === 'opaqueredirect') throw new ApiError(302, 'SEALED_UNDER_CLIENT_KEY', 'sealed under the client key');
  if (res.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    route();
    throw new ApiError(401, 'UNAUTHORIZED', 'the API key was refused');
  }
  const text = await res.text();
  const value = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, value?.error?.code ?? 'UNKNOWN', value?.error?.message ?? res.statusText);
  return value;
}

/**
 * A client-key call's documents are sealed under its client key: a 302 to the encrypted object once the call
 * ended, 409 ARTIFACTS_NOT_SEALED while it is live. The console cannot read them (`callvault decrypt` can).
 */
function sealedForClient(err) {
  return err.status === 302 || err.code === 'ARTIFACTS_NOT_SEALED';
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function notice(text) {
  const box = $('notice');
  box.textContent = text;
  box.hidden = !text;
}

function show(section) {
  for (const id of ['sign-in', 'list', 'call']) $(id).hidden = id !== section;
  $('sign-out').hidden = section === 'sign-in';
}

function formatSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  const m = Math.floor(s / 60);
  const rest = s - m * 60;
  return `${m}:${rest.toFixed(1).padStart(4, '0')}`;
}

function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

// ---- sign in ---------------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('api-key').value.trim();
  sessionStorage.setItem(KEY_STORAGE, key);
  $('sign-in-error').textContent = '';
  try {
    await api('/api/call-recordings?limit=1');
    $('api-key').value = '';
    route();
  } catch (err) {
    sessionStorage.removeItem(KEY_STORAGE);
    $('sign-in-error').textContent = err.status === 403 ? 'This key may not read recordings.' : `Sign-in failed: ${err.message}`;
  }
});

$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE);
  stopPlayer();
  window.location.hash = '#/';
  route();
});

// ---- the list --------------------------------------------------------------------------------

const listState = { page: 1, pages: 1 };

$('filters').addEventListener('submit', (event) => {
  event.preventDefault();
  listState.page = 1;
  loadList();
});
for (const id of ['status', 'source']) $(id).addEventListener('change', () => {
  listState.page = 1;
  loadList();
});
$('prev').addEventListener('click', () => {
  if (listState.page > 1) {
    listState.page -= 1;
    loadList();
  }
});
$('next').addEventListener('click', () => {
  if (listState.page < listState.pages) {
    listState.page += 1;
    loadList();
  }
});

async function loadList() {
  const query = new URLSearchParams({ page: String(listState.page), limit: String(PAGE_SIZE) });
  const search = $('search').value.trim();
  if (search) query.set('callSid', search);
  if ($('status').value) query.set('status', $('status').value);
  if ($('source').value) query.set('source', $('source').value);
  const body = $('calls').tBodies[0];
  try {
    const page = await api(`/api/call-recordings?${query}`);
    listState.pages = Math.max(1, page.pages);
    body.replaceChildren(
      ...page.recordings.map((r) => {
        const row = el(
          'tr',
          { dataset: { callSid: r.callSid ?? '' } },
          el('td', {}, el('a', { href: `#/calls/${encodeURIComponent(r.callSid ?? '')}` }, r.callSid ?? r.recordingSid)),
          el('td', {}, formatTime(r.startTime)),
          el('td', {}, r.durationMs === null ? '—' : formatSeconds(r.durationMs / 1000)),
          el('td', {}, r.status),
          el('td', {}, r.source),
          el('td', {}, String(r.channels)),
        );
        row.addEventListener('click', (event) => {
          if (event.target.tagName !== 'A' && r.callSid) window.location.hash = `#/calls/${encodeURIComponent(r.callSid)}`;
        });
        return row;
      }),
    );
    $('empty').hidden = page.recordings.length > 0;
    $('page-info').textContent = `page ${page.page} of ${listState.pages} (${page.total} recordings)`;
    $('prev').disabled = listState.page <= 1;
    $('next').disabled = listState.page >= listState.pages;
  } catch (err) {
    notice(`Could not list calls: ${err.message}`);
  }
}

// ---- a call ----------------------------------------------------------------------------------

const player = $('player');
/** The call on screen: its id, the primary recording, transcript entries with their offsets, the waveform. */
let current = null;

function stopPlayer() {
  player.pause();
  player.removeAttribute('src');
  player.load();
}

async function loadCall(callSid) {
  stopPlayer();
  const state = { callSid, recording: null, entries: [], peaks: null, duration: 0 };
  current = state;
  $('call-title').textContent = callSid;
  $('metadata').replaceChildren();
  $('transcript').replaceChildren();
  $('events').tBodies[0].replaceChildren();
  $('waveforms').replaceChildren();
  $('player-note').textContent = '';
  $('live-controls').hidden = true;
  const id = encodeURIComponent(callSid);
  const [metadata, recordings] = await Promise.all([
    api(`/calls/${id}/metadata`, { artifact: true }).catch((err) => {
      if (err.status === 404) return null;
      if (sealedForClient(err)) return { sealed: true };
      return Promise.reject(err);
    }),
    api(`/api/call-recordings?callSid=${id}&limit=100`),
  ]);
  if (current !== state) return;
  const sealed = metadata?.sealed === true;
  if (!metadata && recordings.recordings.length === 0) {
    notice(`No call ${callSid}.`);
    window.location.hash = '#/';
    return;
  }
  // The primary recording (the first stream's), as GET /calls/{id}/recording serves it.
  const rows = recordings.recordings.filter((r) => r.metadata?.primary !== false);
  state.recording = rows.find((r) => r.status === 'completed') ?? rows.find((r) => r.status === 'uploading') ?? rows[0] ?? null;
  state.live = rows.find((r) => r.status === 'in-progress') ?? null;
  if (sealed) {
    $('metadata').replaceChildren(
      el('dt', {}, 'key mode'),
      el('dd', {}, 'client: this call\'s metadata, transcript and events are sealed under its client key (download them from the API and decrypt them with `callvault decrypt`)'),
    );
  } else if (metadata) renderMetadata(metadata);
  $('live-controls').hidden = !((!sealed && metadata?.status === 'active') || state.live);
  await Promise.all([loadTranscript(state), loadEvents(state), loadAudio(state)]);
}

function renderMetadata(metadata) {
  const items = [];
  const add = (name, value) => {
    if (value === null || value === undefined) return;
    items.push(el('dt', {}, name), el('dd', {}, typeof value === 'object' ? JSON.stringify(value) : String(value)));
  };
  for (const [name, value] of Object.entries(metadata)) {
    if (name === 'recording' && value) for (const [k, v] of Object.entries(value)) add(`recording.${k}`, v);
    else if (name === 'speech' && value) for (const [k, v] of Object.entries(value)) add(`speech.${k}`, v);
    else add(name, value);
  }
  $('metadata').replaceChildren(...items);
}

async function loadTranscript(state) {
  const transcript = await api(`/calls/${encodeURIComponent(state.callSid)}/transcript`, { artifact: true }).catch((err) =>
    err.status === 404 || sealedForClient(err) ? { entries: [] } : Promise.reject(err),
  );
  if (current !== state) return;
  // Time zero of the audio is the recording's start; entries before it sit at 0.
  const origin = Date.parse(state.recording?.startTime ?? transcript.start_time ?? '') || 0;
  state.entries = transcript.entries.map((entry, index) => {
    const offset = Math.max(0, (Date.parse(entry.timestamp) - origin) / 1000);
    const item = el(
      'li',
      { dataset: { offset: String(offset), index: String(index) }, title: entry.timestamp },
      el('span', { class: 'offset' }, formatSeconds(offset)),
      el('span', { class: 'channel' }, entry.channel),
      el('span', { class: 'text' }, entry.text),
    );
    item.addEventListener('click', () => seek(offset));
    return { offset, item };
  });
  $('transcript').replaceChildren(...state.entries.map((e) => e.item));
  highlight();
}

async function loadEvents(state) {
  const events = await api(`/calls/${encodeURIComponent(state.callSid)}/events`, { artifact: true }).catch((err) =>
    err.status === 404 || sealedForClient(err) ? { events: [] } : Promise.reject(err),
  );
  if (current !== state) return;
  $('events').tBodies[0].replaceChildren(
    ...events.events.map((e) => {
      const { timestamp, type, media_ms: mediaMs, source, ...rest } = e;
      return el(
        'tr',
        {},
        el('td', {}, formatTime(timestamp)),
        el('td', {}, mediaMs === null || mediaMs === undefined ? '' : formatSeconds(mediaMs / 1000)),
        el('td', {}, type),
        el('td', {}, Object.keys(rest).length ? JSON.stringify(rest) : ''),
      );
    }),
  );
}

async function loadAudio(state) {
  const recording = state.recording;
  if (!recording || (recording.status !== 'completed' && recording.status !== 'uploading')) {
    $('player-note').textContent = recording ? `The recording is ${recording.status}; playback once it is completed.` : 'No recording.';
    return;
  }
  let playback;
  try {
    playback = await api(`/calls/${encodeURIComponent(state.callSid)}/playback-url`, { method: 'POST', body: { track: 'stereo' } });
  } catch (err) {
    if (err.code === 'CONFLICT' && recording.keyMode === 'client') {
      $('player-note').textContent = 'Client key mode: the gateway cannot decrypt this recording. Download it and decrypt it with `callvault decrypt`.';
      return;
    }
    throw err;
  }
  if (current !== state) return;
  state.playback = playback;
  // Same origin as the console (Content-Security-Policy media-src 'self'): the relative path, not PUBLIC_URL.
  player.src = apiUrl(playback.path).href;
  $('player-note').textContent = `Signed playback URL valid until ${formatTime(playback.expires_at)}.`;
  if (playback.content_type === 'audio/wav') await drawWaveforms(state, apiUrl(playback.path).href, playback.channels);
}

// ---- waveform --------------------------------------------------------------------------------

const BUCKETS = 1000;

/** Streams the WAV once and keeps, per channel, the peak of each of BUCKETS slices: memory stays bounded. */
async function computePeaks(url) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok) throw new Error(`audio answered ${res.status}`);
  const reader = res.body.getReader();
  let header = new Uint8Array(0);
  let channels = 0;
  let frames = 0;
  let peaks = null;
  let frame = 0;
  let channel = 0;
  let carry = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    let chunk = value;
    if (peaks === null) {
      const joined = new Uint8Array(header.length + chunk.length);
      joined.set(header);
      joined.set(chunk, header.length);
      if (joined.length < 44) {
        header = joined;
        continue;
      }
      const view = new DataView(joined.buffer, joined.byteOffset, 44);
      channels = view.getUint16(22, true);
      const dataBytes = view.getUint32(40, true);
      frames = Math.floor(dataBytes / (2 * channels));
      peaks = Array.from({ length: channels }, () => new Float32Array(BUCKETS));
      chunk = joined.subarray(44);
    }
    if (carry !== null) {
      const joined = new Uint8Array(1 + chunk.length);
      joined[0] = carry;
      joined.set(chunk, 1);
      chunk = joined;
      carry = null;
    }
    const usable = chunk.length - (chunk.length % 2);
    if (usable < chunk.length) carry = chunk[chunk.length - 1];
    const samples = new DataView(chunk.buffer, chunk.byteOffset, usable);
    for (let i = 0; i < usable; i += 2) {
      const bucket = Math.min(BUCKETS - 1, Math.floor((frame * BUCKETS) / Math.max(1, frames)));
      const magnitude = Math.abs(samples.getInt16(i, true)) / 32768;
      if (magnitude > peaks[channel][bucket]) peaks[channel][bucket] = magnitude;
      channel += 1;
      if (channel === channels) {
        channel = 0;
        frame += 1;
      }
    }
  }
  return { channels, frames, peaks: peaks ?? [] };
}

async function drawWaveforms(state, url, channels) {
  const labels = channels === 2 ? ['caller (left)', 'bot (right)'] : ['mixed'];
  const canvases = labels.map((label, channel) => {
    const canvas = el('canvas', { width: String(BUCKETS), height: '80', 'aria-label': `waveform: ${label}`, dataset: { channel: String(channel) } });
    canvas.addEventListener('click', (event) => {
      const box = canvas.getBoundingClientRect();
      const duration = player.duration || state.duration;
      if (duration) seek(((event.clientX - box.left) / box.width) * duration);
    });
    return canvas;
  });
  $('waveforms').replaceChildren(...labels.flatMap((label, i) => [el('div', { class: 'channel-label' }, label), canvases[i]]));
  state.canvases = canvases;
  try {
    const { peaks } = await computePeaks(url);
    if (current !== state) return;
    state.peaks = peaks;
    $('waveforms').dataset.ready = 'true';
    paint();
  } catch (err) {
    $('player-note').textContent = `Waveform unavailable: ${err.message}`;
  }
}

function paint() {
  if (!current?.peaks || !current.canvases) return;
  const duration = player.duration || 0;
  const position = duration ? player.currentTime / duration : 0;
  current.canvases.forEach((canvas, channel) => {
    const ctx = canvas.getContext('2d');
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = channel === 0 ? '#3b6fd8' : '#d8773b';
    const peaks = current.peaks[channel] ?? new Float32Array(0);
    for (let x = 0; x < peaks.length; x++) {
      const h = Math.max(1, peaks[x] * height);
      ctx.fillRect(x, (height - h) / 2, 1, h);
    }
    ctx.fillStyle = '#b00020';
    ctx.fillRect(Math.round(position * width), 0, 2, height);
  });
}

// ---- playback, transcript follows ------------------------------------------------------------

function seek(seconds) {
  player.currentTime = seconds;
  highlight();
  paint();
}

function highlight() {
  if (!current) return;
  const t = player.currentTime;
  let active = null;
  for (const entry of current.entries) if (entry.offset <= t + 0.05) active = entry;
  for (const entry of current.entries) {
    const on = entry === active;
    entry.item.classList.toggle('current', on);
    if (on) entry.item.setAttribute('aria-current', 'true');
    else entry.item.removeAttribute('aria-current');
  }
  if (active) active.item.scrollIntoView({ block: 'nearest' });
}

for (const type of ['timeupdate', 'seeked', 'loadedmetadata']) {
  player.addEventListener(type, () => {
    highlight();
    paint();
  });
}

// A playback URL is short-lived: once it has expired the player's next request fails. The gateway says so
// (403 PLAYBACK_URL_EXPIRED; its clock decides, not this browser's), and the page asks for a new URL.
player.addEventListener('error', async () => {
  const state = current;
  const failed = player.currentSrc;
  if (!state?.playback || !failed) return;
  const probe = await fetch(failed, { headers: { range: 'bytes=0-0' }, cache: 'no-store' });
  const answer = probe.status === 403 ? await probe.json().catch(() => null) : null;
  if (answer?.error?.code !== 'PLAYBACK_URL_EXPIRED' || current !== state) return;
  const at = player.currentTime;
  const playback = await api(`/calls/${encodeURIComponent(state.callSid)}/playback-url`, { method: 'POST', body: { track: 'stereo' } });
  if (current !== state) return;
  state.playback = playback;
  player.src = apiUrl(playback.path).href;
  player.currentTime = at;
  $('player-note').textContent = `Signed playback URL renewed, valid until ${formatTime(playback.expires_at)}.`;
});

// ---- live controls and delete ----------------------------------------------------------------

$('live-controls').addEventListener('click', async (event) => {
  const action = event.target?.dataset?.action;
  if (!action || !current) return;
  const callSid = current.callSid;
  try {
    if (action === 'start') await api('/api/call-recordings/start', { method: 'POST', body: { callSid } });
    else if (action === 'stop') await api('/api/call-recordings/stop', { method: 'POST', body: { callSid } });
    else {
      const live = current.live ?? (await api(`/api/call-recordings?callSid=${encodeURIComponent(callSid)}&status=in-progress&limit=1`)).recordings[0];
      if (!live) throw new Error('nothing is recording this call');
      await api(`/api/call-recordings/${encodeURIComponent(live.recordingSid)}/${action}`, { method: 'POST', body: {} });
    }
    notice(`${action}: done`);
    await loadCall(callSid);
  } catch (err) {
    notice(`${action} failed: ${err.message}`);
  }
});

$('delete').addEventListener('click', () => $('confirm-delete').showModal());

$('confirm-delete').addEventListener('close', async () => {
  if ($('confirm-delete').returnValue !== 'confirm' || !current) return;
  const callSid = current.callSid;
  try {
    stopPlayer();
    await api(`/calls/${encodeURIComponent(callSid)}/recording`, { method: 'DELETE' });
    notice(`Deleted the recordings of ${callSid}.`);
    window.location.hash = '#/';
  } catch (err) {
    notice(`Delete failed: ${err.message}`);
  }
});

// ---- routing ---------------------------------------------------------------------------------

function route() {
  if (!apiKey()) {
    show('sign-in');
    $('who').textContent = '';
    return;
  }
  $('who').textContent = 'signed in';
  const match = /^#\/calls\/(.+)$/.exec(window.location.hash);
  if (match) {
    show('call');
    loadCall(decodeURIComponent(match[1])).catch((err) => notice(`Could not load the call: ${err.message}`));
  } else {
    show('list');
    current = null;
    stopPlayer();
    loadList();
  }
}

window.addEventListener('hashchange', route);
route();
