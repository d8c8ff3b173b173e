/**
 * A small k6-compatible harness: runs a k6 script of load/k6/ for one iteration of each of its scenarios
 * (setup and teardown included) in a worker thread, on the k6 APIs of test/load/k6-vu.ts, and reports its
 * thresholds, checks, metrics, requests and sockets. k6 itself cannot be installed here.
 *
 * The script and its local modules are compiled with `typescript` into a temporary directory; their
 * `import … from 'k6/…'` are pointed at the harness's modules, and any other import (a URL, an npm package)
 * is refused: the scripts must run on a stock k6. The VU's blocking calls (http, k6/ws) are answered by this
 * thread, which owns the sockets (fetch, ws) and wakes the VU through a SharedArrayBuffer.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import ts from 'typescript';
import WebSocket from 'ws';
import type { HostMessage, HttpRequestMessage, K6RunResult, VuWorkerData, WorkerMessage, WsCommand } from './k6-protocol.js';
import { modules } from './k6-vu.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const K6_SCRIPTS_DIR = resolve(HERE, '../../load/k6');
const RUNTIME_SOURCE = join(HERE, 'k6-vu.ts');
const require = createRequire(import.meta.url);

export interface RunK6Options {
  /** Path of the script, relative to load/k6 or absolute. */
  script: string;
  env: Record<string, string>;
  /** Whole run, setup included. */
  timeoutMs?: number;
}

type Resolve = (specifier: string, fromFile: string) => string;

/** Rewrites every static import/export specifier of a compiled module with `resolveSpecifier`. */
function specifierRewriter(resolveSpecifier: Resolve, fileName: string, dynamicImports: boolean): ts.TransformerFactory<ts.SourceFile> {
  return (ctx) => (sourceFile) => {
    const visit = (node: ts.Node): ts.Node => {
      if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
        return ctx.factory.updateImportDeclaration(
          node,
          node.modifiers,
          node.importClause,
          ctx.factory.createStringLiteral(resolveSpecifier(node.moduleSpecifier.text, fileName)),
          node.attributes,
        );
      }
      if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
        return ctx.factory.updateExportDeclaration(
          node,
          node.modifiers,
          node.isTypeOnly,
          node.exportClause,
          ctx.factory.createStringLiteral(resolveSpecifier(node.moduleSpecifier.text, fileName)),
          node.attributes,
        );
      }
      if (!dynamicImports && ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        throw new Error(`${fileName}: dynamic import() is not supported by the harness`);
      }
      return ts.visitEachChild(node, visit, ctx);
    };
    return ts.visitNode(sourceFile, visit) as ts.SourceFile;
  };
}

async function compile(source: string, outFile: string, resolveSpecifier: Resolve, { dynamicImports = false } = {}): Promise<void> {
  const text = await readFile(source, 'utf8');
  const out = ts.transpileModule(text, {
    fileName: source,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, isolatedModules: true, sourceMap: false },
    transformers: { after: [specifierRewriter(resolveSpecifier, source, dynamicImports)] },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) throw new Error(`${source}: ${ts.formatDiagnostics(errors, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => '.', getNewLine: () => '\n' })}`);
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(outFile, out.outputText);
}

async function tsFilesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await tsFilesUnder(path)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const relativeMjs = (specifier: string): string => specifier.replace(/\.ts$/, '.mjs');

/** Compiles the runtime, a shim per k6 module and every script of load/k6 into `root`; returns the scripts' dir. */
async function build(root: string): Promise<string> {
  const runtimeFile = join(root, 'runtime', 'k6-vu.mjs');
  const shimUrls = new Map<string, string>();
  for (const [name, exports] of Object.entries(modules)) {
    const file = join(root, 'runtime', 'modules', `${name.replace(/\//g, '-')}.mjs`);
    const names = Object.keys(exports);
    const shim = [
      `import { modules } from ${JSON.stringify(pathToFileURL(runtimeFile).href)};`,
      `const m = modules[${JSON.stringify(name)}];`,
      'export default m;',
      ...names.map((n) => `export const ${n} = m[${JSON.stringify(n)}];`),
      '',
    ].join('\n');
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, shim);
    shimUrls.set(name, pathToFileURL(file).href);
  }

  await compile(RUNTIME_SOURCE, runtimeFile, (specifier, from) => {
    if (specifier.startsWith('node:')) return specifier;
    if (specifier === 'ws') return pathToFileURL(require.resolve('ws')).href;
    throw new Error(`${from}: the harness runtime may import only node: built-ins and ws, not ${specifier}`);
  }, { dynamicImports: true });

  const scriptsRoot = join(root, 'scripts');
  for (const source of await tsFilesUnder(K6_SCRIPTS_DIR)) {
    const out = join(scriptsRoot, relative(K6_SCRIPTS_DIR, source)).replace(/\.ts$/, '.mjs');
    await compile(source, out, (specifier, from) => {
      const shim = shimUrls.get(specifier);
      if (shim) return shim;
      if (specifier.startsWith('./') || specifier.startsWith('../')) {
        if (!specifier.endsWith('.ts')) throw new Error(`${from}: import ${specifier} by its .ts file name, as k6 resolves it`);
        return relativeMjs(specifier);
      }
      const k6Module = specifier === 'k6' || specifier.startsWith('k6/');
      throw new Error(
        k6Module
          ? `${from}: ${specifier} is not implemented by the harness (test/load/k6-vu.ts)`
          : `${from}: ${specifier} is not a k6 module; the scripts may import only k6 modules and their own files`,
      );
    });
  }
  return scriptsRoot;
}

/** This thread's side of the VU: performs the VU's HTTP requests and owns its k6/ws sockets. */
class Host {
  readonly #sockets = new Map<number, { ws: WebSocket; closedByVu: boolean }>();
  readonly #signal: Int32Array;
  readonly #post: (message: HostMessage) => void;

  constructor(port: import('node:worker_threads').MessagePort, signal: SharedArrayBuffer) {
    this.#signal = new Int32Array(signal);
    this.#post = (message) => {
      port.postMessage(message, message.type === 'http.response' ? [message.body] : []);
      Atomics.add(this.#signal, 0, 1);
      Atomics.notify(this.#signal, 0);
    };
  }

  handle(message: HttpRequestMessage | WsCommand): void {
    if (message.type === 'http') {
      void this.#http(message);
      return;
    }
    const socket = this.#sockets.get(message.sid);
    switch (message.type) {
      case 'ws.open':
        this.#open(message.sid, message.url, message.headers);
        break;
      case 'ws.send':
        if (socket && !socket.closedByVu && socket.ws.readyState === WebSocket.OPEN) socket.ws.send(message.data);
        break;
      case 'ws.ping':
        if (socket?.ws.readyState === WebSocket.OPEN) socket.ws.ping();
        break;
      case 'ws.close':
        if (socket) {
          socket.closedByVu = true;
          if (socket.ws.readyState === WebSocket.OPEN) socket.ws.close(message.code);
          // k6 does not wait for the peer's close frame; do not keep a half-closed socket around either.
          setTimeout(() => socket.ws.terminate(), 2_000).unref();
        }
        break;
    }
  }

  async #http(m: HttpRequestMessage): Promise<void> {
    const started = performance.now();
    try {
      const res = await fetch(m.url, {
        method: m.method,
        headers: m.headers,
        ...(m.body !== null && m.method !== 'GET' && m.method !== 'HEAD' ? { body: m.body } : {}),
        redirect: m.maxRedirects > 0 ? 'follow' : 'manual',
        signal: AbortSignal.timeout(m.timeoutMs),
      });
      const body = await res.arrayBuffer();
      const headers: Record<string, string> = {};
      res.headers.forEach((value, key) => {
        headers[key] = value;
      });
      this.#post({ type: 'http.response', id: m.id, status: res.status, statusText: `${res.status} ${res.statusText}`, url: res.url, headers, body, error: '', durationMs: performance.now() - started });
    } catch (err) {
      // A transport failure is k6's status 0 with an error, never an exception in the VU.
      this.#post({ type: 'http.response', id: m.id, status: 0, statusText: '', url: m.url, headers: {}, body: new ArrayBuffer(0), error: String(err), durationMs: performance.now() - started });
    }
  }

  #open(sid: number, url: string, headers: Record<string, string>): void {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false, handshakeTimeout: 60_000 });
    const entry = { ws, closedByVu: false };
    this.#sockets.set(sid, entry);
    let settled = false;
    let upgradeHeaders: Record<string, string> = {};
    const forward = (message: HostMessage): void => {
      if (!entry.closedByVu) this.#post(message);
    };
    ws.on('upgrade', (res) => {
      upgradeHeaders = Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]));
    });
    ws.on('open', () => {
      settled = true;
      forward({ type: 'ws.event', sid, event: 'open', status: 101, headers: upgradeHeaders });
    });
    ws.on('unexpected-response', (_req, res) => {
      settled = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const resHeaders = Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]));
        forward({ type: 'ws.event', sid, event: 'refused', status: res.statusCode ?? 0, headers: resHeaders, body: Buffer.concat(chunks).toString('utf8') });
        ws.terminate();
      });
    });
    ws.on('error', (err) => {
      if (!settled) {
        settled = true;
        forward({ type: 'ws.event', sid, event: 'connect-error', error: err.message });
      } else forward({ type: 'ws.event', sid, event: 'error', error: err.message });
    });
    ws.on('message', (data, isBinary) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary) forward({ type: 'ws.event', sid, event: 'binaryMessage', data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer });
      else forward({ type: 'ws.event', sid, event: 'message', data: bytes.toString('utf8') });
    });
    ws.on('ping', () => forward({ type: 'ws.event', sid, event: 'ping' }));
    ws.on('pong', () => forward({ type: 'ws.event', sid, event: 'pong' }));
    ws.on('close', (code, reason) => {
      this.#sockets.delete(sid);
      if (settled) forward({ type: 'ws.event', sid, event: 'close', code, reason: reason.toString('utf8') });
    });
  }

  closeAll(): void {
    for (const { ws } of this.#sockets.values()) ws.terminate();
    this.#sockets.clear();
  }
}

/** Runs one iteration of each scenario of a load/k6 script against real servers. */
export async function runK6Script(options: RunK6Options): Promise<K6RunResult> {
  const root = await mkdtemp(join(tmpdir(), 'callvault-k6-'));
  const { port1, port2 } = new MessageChannel();
  const signal = new SharedArrayBuffer(4);
  const host = new Host(port1, signal);
  let worker: Worker | undefined;
  try {
    const scriptsRoot = await build(root);
    const script = join(scriptsRoot, relative(K6_SCRIPTS_DIR, resolve(K6_SCRIPTS_DIR, options.script))).replace(/\.ts$/, '.mjs');
    const workerData: VuWorkerData = { k6Harness: true, port: port2, signal, scriptUrl: pathToFileURL(script).href, env: options.env };
    const vu = new Worker(new URL(pathToFileURL(join(root, 'runtime', 'k6-vu.mjs')).href), { workerData, transferList: [port2] });
    worker = vu;
    return await new Promise<K6RunResult>((resolvePromise, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const timeoutMs = options.timeoutMs ?? 120_000;
      const timer = setTimeout(() => finish(() => reject(new Error(`k6 script ${options.script} did not finish within ${timeoutMs} ms`))), timeoutMs);
      const onMessage = (message: WorkerMessage): void => {
        if (message.type === 'done') finish(() => resolvePromise(message.result));
        else if (message.type === 'fatal') finish(() => reject(new Error(`k6 script ${options.script}: ${message.error}\n${message.logs.join('\n')}`)));
        else host.handle(message);
      };
      port1.on('message', onMessage);
      vu.once('error', (err) => finish(() => reject(err)));
      vu.once('exit', (code) => {
        // The worker's last message may still be queued on the port when its 'exit' arrives: take it first.
        for (let queued = receiveMessageOnPort(port1); queued && !settled; queued = receiveMessageOnPort(port1)) onMessage(queued.message as WorkerMessage);
        finish(() => reject(new Error(`the VU worker exited (${code}) before reporting`)));
      });
    });
  } finally {
    host.closeAll();
    port1.close();
    await worker?.terminate();
    await rm(root, { recursive: true, force: true });
  }
}
