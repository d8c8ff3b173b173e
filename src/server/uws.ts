import { createRequire } from 'node:module';
import { CallvaultError, ErrorCode } from '../errors/index.js';

type UwsModule = typeof import('uWebSockets.js');

/**
 * Loads uWebSockets.js and refuses the pure-JS fallback. The package we install under that name
 * silently swaps in a slow Node implementation when its native binary does not load; a gateway
 * sized for thousands of calls must not come up on it unnoticed.
 */
export function loadNativeUws(): UwsModule {
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as UwsModule & Record<string, unknown>;
  if (!isNativeUws(uws)) {
    throw new CallvaultError(
      ErrorCode.ConfigInvalid,
      `uWebSockets.js native binary did not load for ${process.platform}-${process.arch} (Node ABI ${process.versions.modules}); refusing to start on the pure-JS fallback`,
      { details: { platform: process.platform, arch: process.arch, abi: process.versions.modules } },
    );
  }
  return uws;
}

export function isNativeUws(uws: Record<string, unknown>): boolean {
  // The fallback exports only App and a couple of helpers; the native addon's functions are native code.
  const app = uws['App'];
  return (
    typeof app === 'function' &&
    /\[native code\]/.test(Function.prototype.toString.call(app)) &&
    typeof uws['getParts'] === 'function'
  );
}
