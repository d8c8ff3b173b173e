/** The management API as the scripts use it (docs/api.md): bearer auth, recordings by call. */
import { sleep } from 'k6';
import http from 'k6/http';

export interface RecordingView {
  id: string;
  recordingSid: string;
  callSid: string | null;
  status: 'in-progress' | 'uploading' | 'completed' | 'failed';
  durationMs: number | null;
  channels: number;
  sampleRate: number;
  size: number | null;
  source: string;
}

export function authHeaders(apiKey: string): Record<string, string> {
  return { Authorization: `Bearer ${apiKey}` };
}

function isRecordingView(value: unknown): value is RecordingView {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  return typeof r['id'] === 'string' && typeof r['recordingSid'] === 'string' && typeof r['status'] === 'string';
}

/** The recordings of a list answer, or null when the answer is not one. */
export function recordingsOf(body: unknown): RecordingView[] | null {
  if (typeof body !== 'object' || body === null) return null;
  const list = (body as Record<string, unknown>)['recordings'];
  if (!Array.isArray(list) || !list.every(isRecordingView)) return null;
  return list;
}

export function recordingOf(body: unknown): RecordingView | null {
  if (typeof body !== 'object' || body === null) return null;
  const recording = (body as Record<string, unknown>)['recording'];
  return isRecordingView(recording) ? recording : null;
}

export function jsonOf(res: { body: unknown; json(): unknown }): unknown {
  if (typeof res.body !== 'string' || res.body === '') return null;
  try {
    return res.json();
  } catch (err) {
    return { unparsable: String(err) };
  }
}

/**
 * Polls `GET /api/call-recordings?callSid=` until the call's recording has finished (completed, or
 * uploading: sealed in the spool, S3 still to take it; or failed), at most `timeoutS` seconds.
 * Returns the last recording seen, or null when the call has none.
 */
export function waitForFinishedRecording(base: string, apiKey: string, callSid: string, timeoutS: number): RecordingView | null {
  const deadline = Date.now() + timeoutS * 1000;
  let last: RecordingView | null = null;
  for (;;) {
    const res = http.get(`${base}/api/call-recordings?callSid=${encodeURIComponent(callSid)}&limit=5`, {
      headers: authHeaders(apiKey),
      tags: { name: 'recordings-of-call' },
    });
    const recordings = res.status === 200 ? recordingsOf(jsonOf(res)) : null;
    last = recordings?.[0] ?? last;
    if (last && last.status !== 'in-progress') return last;
    if (Date.now() >= deadline) return last;
    sleep(0.25);
  }
}
