/**
 * Configuration of the k6 scripts: every setting comes from `__ENV` (`k6 run -e NAME=value` or the
 * environment). A missing required setting or a malformed number stops the test in the init context,
 * naming the variable, before any traffic is sent.
 */

export function env(name: string, fallback?: string): string {
  const value = __ENV[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  throw new Error(`${name} is not set (k6 run -e ${name}=...)`);
}

export function optionalEnv(name: string): string | undefined {
  const value = __ENV[name];
  return value === undefined || value === '' ? undefined : value;
}

export function numberEnv(name: string, fallback: number, { min = 0, integer = false }: { min?: number; integer?: boolean } = {}): number {
  const raw = optionalEnv(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new Error(`${name}=${raw} is not ${integer ? 'an integer' : 'a number'} >= ${min}`);
  }
  return value;
}

/** The gateway's HTTP base URL without a trailing slash. */
export function httpBase(url: string): string {
  if (!/^https?:\/\//.test(url)) throw new Error(`GATEWAY_URL must be an http(s) URL, got ${url}`);
  return url.replace(/\/+$/, '');
}

/** The WebSocket URL of the same origin: http → ws, https → wss. */
export function wsBase(url: string): string {
  return httpBase(url).replace(/^http/, 'ws');
}

/** Seconds as a whole number of 20 ms frames, in ms. */
export function callMs(seconds: number): number {
  const ms = Math.round((seconds * 1000) / 20) * 20;
  if (ms <= 0) throw new Error(`CALL_SECONDS=${seconds} is shorter than one 20 ms frame`);
  return ms;
}

export function hex(buffer: ArrayBuffer): string {
  const bytes = new Uint8Array(buffer);
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** Bytes of an ASCII string (k6 has no TextEncoder). */
export function asciiBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) throw new Error(`not ASCII: ${text}`);
    out[i] = code;
  }
  return out;
}
