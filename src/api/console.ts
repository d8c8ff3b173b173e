/**
 * The web console at `/console`: three static files from the repository's `console/` folder (no framework, no
 * CDN, no build step), served with a strict Content-Security-Policy: scripts, styles, media and requests from
 * the gateway only, no inline script or style, no framing, no referrer (a playback URL's signature never leaks
 * in a Referer). The page signs in with an API key it keeps in sessionStorage and calls the API with it.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { GatewayPort } from '../gateway/port.js';
import type { HttpResult, Router } from '../http/http.js';
import { addConsolePaths } from './playback-openapi.js';

export const CONSOLE_PATH = '/console';
export const CONSOLE_ASSET_PATH = '/console/:file';
/** From dist/api/ (or src/api/), two levels up: the repository's console/ folder. */
export const CONSOLE_DIR = fileURLToPath(new URL('../../console/', import.meta.url));

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "media-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ASSETS: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  // Small files that change with the gateway: revalidated on every load.
  'cache-control': 'no-cache',
};

export function registerConsoleRoutes(router: Router, gateway: GatewayPort): void {
  addConsolePaths(Object.keys(ASSETS));
  // Read once at start-up: three small files, and no path from a request ever reaches the file system.
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(ASSETS)) {
    try {
      files.set(name, readFileSync(`${CONSOLE_DIR}${name}`));
    } catch (err) {
      gateway.options.logger.warn({ file: name, err }, 'console file missing; /console will answer 404 for it');
    }
  }

  const serve = (name: string): HttpResult => {
    const body = files.get(name);
    const type = ASSETS[name];
    if (!body || !type) throw new CallvaultError(ErrorCode.NotFound, 'no such console file');
    return { status: 200, headers: { 'content-type': type, ...SECURITY_HEADERS }, body };
  };

  router.route('get', CONSOLE_PATH, 'console', () => serve('index.html'));
  // `/console/`: the page lives at `/console` (its relative links resolve from there).
  router.route('get', `${CONSOLE_PATH}/`, 'console_slash', () => ({ status: 302, headers: { location: '../console', 'cache-control': 'no-cache' }, body: '' }));
  router.route('get', CONSOLE_ASSET_PATH, 'console_asset', (ctx) => serve(ctx.params[0] ?? ''));
}
