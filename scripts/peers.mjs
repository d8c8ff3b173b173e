#!/usr/bin/env node
/**
 * Installs the peers tests need, pinned by version, into a cache shared across checkouts:
 * `node scripts/peers.mjs ensure <minio|livekit|helm|kubeconform|kubernetes-schemas|prometheus|pocketsphinx|espeak-ng|chromium|all>`.
 * MinIO, LiveKit, Helm and kubeconform are built with `go install`; Prometheus (and its promtool) come from Debian's
 * `prometheus` package at a pinned version, fetched with `apt-get download` and unpacked with `dpkg-deb`
 * (not `apt-get install`: that would pull in the web UI's JavaScript packages and start a system service).
 * Each peer lives in `<cache>/bin/<dir>-<version>/<binary>`; the version is part of the path, so
 * a new pin never reuses an old install and an existing install is never redone.
 * System peers (`source: 'debian-system'`: PocketSphinx, espeak-ng, Chromium) are Debian packages installed into the
 * system with `apt-get install -y --no-install-recommends <package>=<version>…` (as root; `apt-get update`
 * first when the lists do not offer the pin): their libraries and data live where the package puts them,
 * and `binary` is an absolute path. They count as installed when `dpkg-query` reports every pinned version.
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PEERS = Object.freeze({
  minio: { source: 'go', dir: 'minio', module: 'github.com/minio/minio', version: 'v0.0.0-20260212201848-7aac2a2c5b7c', binary: 'minio' },
  livekit: {
    source: 'go',
    dir: 'livekit-server',
    module: 'github.com/livekit/livekit-server/cmd/server',
    version: 'v1.13.5',
    binary: 'server',
  },
  // Renders and lints the Helm chart in deploy/helm (test/deploy/helm.test.ts).
  helm: { source: 'go', dir: 'helm', module: 'helm.sh/helm/v3/cmd/helm', version: 'v3.21.4', binary: 'helm' },
  // Validates the rendered manifests against the Kubernetes API schemas, offline (see test/deploy/).
  kubeconform: {
    source: 'go',
    dir: 'kubeconform',
    module: 'github.com/yannh/kubeconform/cmd/kubeconform',
    version: 'v0.8.0',
    binary: 'kubeconform',
  },
  // The Kubernetes API schemas kubeconform validates against, made offline from the OpenAPI definitions the
  // k8s.io/kubernetes Go module ships and the ServiceMonitor CRD the prometheus-operator module ships (`go mod
  // download`, then scripts/k8s-json-schemas.mjs). `binary` is the index written last: it marks the install done.
  'kubernetes-schemas': {
    source: 'go-module-schemas',
    dir: 'kubernetes-json-schema',
    version: 'k8s-v1.34.3-po-v0.85.0',
    binary: 'index.json',
    openapi: { module: 'k8s.io/kubernetes', version: 'v1.34.3', file: 'api/openapi-spec/swagger.json' },
    crds: [
      {
        module: 'github.com/prometheus-operator/prometheus-operator',
        version: 'v0.85.0',
        file: 'jsonnet/prometheus-operator/servicemonitors-crd.json',
      },
    ],
  },
  // The offline speech recogniser behind the transcription engine (src/transcription/pocketsphinx.ts), with
  // its US English acoustic model, language model and dictionary.
  pocketsphinx: {
    source: 'debian-system',
    dir: 'pocketsphinx',
    version: '0.8+5prealpha+1-15',
    packages: { pocketsphinx: '0.8+5prealpha+1-15', 'pocketsphinx-en-us': '0.8+5prealpha+1-15' },
    binary: '/usr/bin/pocketsphinx_continuous',
  },
  // Speech synthesis for the transcription test (test/transcription/): speech the test knows the words of.
  'espeak-ng': {
    source: 'debian-system',
    dir: 'espeak-ng',
    version: '1.51+dfsg-10+deb12u2',
    packages: { 'espeak-ng': '1.51+dfsg-10+deb12u2' },
    binary: '/usr/bin/espeak-ng',
  },
  prometheus: {
    source: 'debian',
    dir: 'prometheus',
    package: 'prometheus',
    version: '2.42.0+ds-5+deb12u1',
    binary: 'prometheus',
    // Installed next to the binary, from the same package.
    tools: ['promtool'],
  },
  // The web console's browser test (test/console/): Debian's Chromium, driven by playwright-core.
  chromium: {
    source: 'debian-system',
    dir: 'chromium',
    version: '156.0.8078.114-1~deb12u1',
    packages: { chromium: '156.0.8078.114-1~deb12u1' },
    binary: '/usr/bin/chromium',
  },
});

// A build of MinIO or LiveKit on two cores takes many minutes; a lock younger than this is a live build.
const STALE_LOCK_MS = 60 * 60 * 1000;
const LOCK_POLL_MS = 2000;

export function peersCacheDir(env = process.env) {
  return env.CALLVAULT_PEERS_CACHE || join(env.HOME || homedir(), '.cache', 'callvault');
}

export function peerInstallDir(name, env = process.env) {
  const peer = peerSpec(name);
  return join(peersCacheDir(env), 'bin', `${peer.dir}-${peer.version}`);
}

export function peerBinaryPath(name, env = process.env) {
  const peer = peerSpec(name);
  if (peer.source === 'debian-system') return peer.binary;
  return join(peerInstallDir(name, env), peer.binary);
}

/** A tool installed with a peer (e.g. promtool with prometheus); present once ensurePeer has returned. */
export function peerToolPath(name, tool, env = process.env) {
  const peer = peerSpec(name);
  if (!(peer.tools ?? []).includes(tool)) throw new Error(`peer "${name}" has no tool "${tool}"`);
  return join(peerInstallDir(name, env), tool);
}

function peerSpec(name) {
  const peer = Object.hasOwn(PEERS, name) ? PEERS[name] : undefined;
  if (!peer) throw new Error(`unknown peer "${name}"; expected one of ${Object.keys(PEERS).join(', ')}`);
  return peer;
}

/** A binary must be executable; the schemas' index only has to be a file; system packages at their pins. */
async function isInstalled(peer, path) {
  if (peer.source !== 'go-module-schemas') return isExecutable(path);
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if (err.code === 'ENOENT') return false;
    throw err;
  }
}

async function isExecutable(path) {
  try {
    await access(path, fsConstants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Exclusive-create lock file holding the owner's pid. A lock whose owner is gone (or which is
 * older than any plausible build) is taken over, so a crashed build does not block forever.
 */
async function acquireLock(lockPath, log) {
  let announced = false;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await rm(lockPath, { force: true });
      };
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    if (await lockIsStale(lockPath)) {
      await rm(lockPath, { force: true });
      continue;
    }
    if (!announced) {
      log(`waiting for another build holding ${lockPath}`);
      announced = true;
    }
    await sleep(LOCK_POLL_MS);
  }
}

async function lockIsStale(lockPath) {
  try {
    const [content, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    if (Date.now() - info.mtimeMs > STALE_LOCK_MS) return true;
    const pid = Number.parseInt(content.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) return Date.now() - info.mtimeMs > 10_000;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return err.code === 'ESRCH';
    }
  } catch (err) {
    // The holder released it between our attempts.
    if (err.code === 'ENOENT') return false;
    throw err;
  }
}

/** `go` from PATH, else the toolchain's standard location (non-login shells often lack /usr/local/go/bin). */
function goBinary() {
  const fromPath = (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(`${dir}/go`));
  return fromPath || !existsSync('/usr/local/go/bin/go') ? 'go' : '/usr/local/go/bin/go';
}

function goInstall(peer, gobin, log) {
  return new Promise((resolve, reject) => {
    const child = spawn(goBinary(), ['install', `${peer.module}@${peer.version}`], {
      env: { ...process.env, GOBIN: gobin, CGO_ENABLED: process.env.CGO_ENABLED ?? '0' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    log(`building ${peer.module}@${peer.version} (this can take several minutes)`);
    child.on('error', (err) => reject(new Error(`cannot run go: ${err.message}`, { cause: err })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`go install ${peer.module}@${peer.version} failed (code ${code}, signal ${signal})`));
    });
  });
}

/** Runs a command to its end; resolves with its exit code and output, rejects only when it cannot start. */
function run(command, args, { cwd, log } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let failedToStart = false;
    const keep = (chunk) => {
      output = (output + chunk.toString('utf8')).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => {
      failedToStart = true;
      if (err.code === 'ENOENT') reject(new Error(`${command} is not available on this machine (${err.message})`, { cause: err }));
      else reject(new Error(`cannot run ${command}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      if (failedToStart) return;
      if (code !== 0) log?.(`${command} ${args.join(' ')} exited with ${code ?? signal}`);
      resolve({ code: code ?? -1, output });
    });
  });
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Debian peer: `apt-get download <package>=<version>` into the staging directory (no root needed while the
 * apt lists know that version; else `apt-get update` first, which needs root), then `dpkg-deb -x`, and the
 * binary and tools are moved up to the staging directory's top. Every failure says why, with apt's output.
 */
async function debianInstall(peer, staging, log) {
  const pin = `${peer.package}=${peer.version}`;
  const reason = `the ${peer.dir} peer is installed from Debian's package ${pin}`;
  const download = () => run('apt-get', ['download', pin], { cwd: staging, log });
  log(`downloading Debian package ${pin}`);
  let result = await download().catch((err) => {
    throw new Error(`${err.message}: ${reason}, which needs apt-get and dpkg-deb`, { cause: err });
  });
  if (result.code !== 0) {
    if (!isRoot()) {
      throw new Error(
        `apt-get download ${pin} failed and refreshing the apt lists (apt-get update) needs root, but this runs as uid ${process.getuid?.()}: ${reason}\n${result.output.trim()}`,
      );
    }
    log('apt-get update (the apt lists do not offer the pinned version yet)');
    const update = await run('apt-get', ['update'], { log });
    if (update.code !== 0) throw new Error(`apt-get update failed (exit ${update.code}): ${reason}\n${update.output.trim()}`);
    result = await download();
    if (result.code !== 0) throw new Error(`apt-get download ${pin} failed (exit ${result.code}) after apt-get update: ${reason}\n${result.output.trim()}`);
  }
  const debs = (await readdir(staging)).filter((name) => name.endsWith('.deb'));
  if (debs.length !== 1) throw new Error(`apt-get download ${pin} left ${debs.length} .deb files in ${staging}, expected one`);
  const root = join(staging, 'root');
  const unpack = await run('dpkg-deb', ['-x', join(staging, debs[0]), root], { log }).catch((err) => {
    throw new Error(`${err.message}: ${reason}`, { cause: err });
  });
  if (unpack.code !== 0) throw new Error(`dpkg-deb -x ${debs[0]} failed (exit ${unpack.code})\n${unpack.output.trim()}`);
  for (const file of [peer.binary, ...(peer.tools ?? [])]) {
    const from = join(root, 'usr', 'bin', file);
    if (!(await isExecutable(from))) throw new Error(`Debian package ${pin} has no executable usr/bin/${file}`);
    await rename(from, join(staging, file));
  }
}

/** `go mod download -json module@version`: the module's files, unpacked read-only in the Go module cache. */
async function goModuleDir(module, version, cwd, log) {
  log(`downloading Go module ${module}@${version}`);
  const result = await run(goBinary(), ['mod', 'download', '-json', `${module}@${version}`], { cwd, log });
  let info;
  try {
    info = JSON.parse(result.output);
  } catch (err) {
    throw new Error(`go mod download ${module}@${version} failed (exit ${result.code})\n${result.output.trim()}`, { cause: err });
  }
  if (result.code !== 0 || info.Error || !info.Dir) {
    throw new Error(`go mod download ${module}@${version} failed (exit ${result.code}): ${info.Error ?? 'no directory'}`);
  }
  return info.Dir;
}

async function schemasInstall(peer, staging, log) {
  const { writeCrdSchemas, writeOpenApiSchemas } = await import('./k8s-json-schemas.mjs');
  const files = [];
  const openapiDir = await goModuleDir(peer.openapi.module, peer.openapi.version, staging, log);
  files.push(...(await writeOpenApiSchemas(join(openapiDir, peer.openapi.file), staging)));
  for (const crd of peer.crds) {
    const crdDir = await goModuleDir(crd.module, crd.version, staging, log);
    files.push(...(await writeCrdSchemas(join(crdDir, crd.file), staging)));
  }
  const sources = [peer.openapi, ...peer.crds].map(({ module, version, file }) => ({ module, version, file }));
  await writeFile(join(staging, peer.binary), `${JSON.stringify({ sources, files: files.sort() }, null, 2)}\n`);
  log(`wrote ${files.length} Kubernetes JSON schemas`);
}

const APT_LOCK_TIMEOUT_SECONDS = 600;

/** `<package>=<version>` for every pinned package that dpkg does not report installed at that version. */
async function missingSystemPackages(peer) {
  const names = Object.keys(peer.packages);
  const query = await run('dpkg-query', ['-W', '-f=${Package}\t${Version}\t${db:Status-Status}\n', ...names]).catch((err) => {
    throw new Error(`${err.message}: the ${peer.dir} peer is installed from Debian's packages with apt-get`, { cause: err });
  });
  // dpkg-query exits 1 when a package is unknown to it; the lines it printed still tell the rest.
  const installed = new Map();
  for (const line of query.output.split('\n')) {
    const [name, version, status] = line.split('\t');
    if (name && status === 'installed') installed.set(name, version);
  }
  return names.filter((name) => installed.get(name) !== peer.packages[name]).map((name) => `${name}=${peer.packages[name]}`);
}

/**
 * System peer: `apt-get install -y --no-install-recommends` of every pinned package not installed at its
 * version (root only), with one `apt-get update` and a retry when the lists do not offer a pin yet.
 */
async function debianSystemInstall(peer, log) {
  const pins = await missingSystemPackages(peer);
  if (pins.length === 0) return;
  const reason = `the ${peer.dir} peer is Debian's ${pins.join(' ')}, installed into the system with apt-get`;
  if (!isRoot()) throw new Error(`installing it needs root, but this runs as uid ${process.getuid?.()}: ${reason}`);
  // dpkg's lock may be held by another install (another peer, another checkout): wait for it rather than fail.
  const install = () => run('apt-get', ['-o', `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_SECONDS}`, 'install', '-y', '--no-install-recommends', ...pins], { log });
  log(`apt-get install ${pins.join(' ')}`);
  let result = await install();
  if (result.code !== 0) {
    log('apt-get update (the apt lists do not offer the pinned versions yet)');
    const update = await run('apt-get', ['-o', `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_SECONDS}`, 'update'], { log });
    if (update.code !== 0) throw new Error(`apt-get update failed (exit ${update.code}): ${reason}\n${update.output.trim()}`);
    result = await install();
    if (result.code !== 0) throw new Error(`apt-get install failed (exit ${result.code}) after apt-get update: ${reason}\n${result.output.trim()}`);
  }
  const still = await missingSystemPackages(peer);
  if (still.length > 0) throw new Error(`apt-get install left ${still.join(' ')} not installed: ${reason}`);
  if (!(await isExecutable(peer.binary))) throw new Error(`${pins.join(' ')} installed, but ${peer.binary} is not an executable`);
}

async function ensureSystemPeer(peer, env, log) {
  if ((await missingSystemPackages(peer)).length === 0 && (await isExecutable(peer.binary))) return peer.binary;
  const binRoot = join(peersCacheDir(env), 'bin');
  await mkdir(binRoot, { recursive: true });
  // dpkg has a lock of its own; this one only keeps two test files from queueing the same install.
  const release = await acquireLock(join(binRoot, `${peer.dir}-${peer.version}.lock`), log);
  try {
    await debianSystemInstall(peer, log);
  } finally {
    await release();
  }
  return peer.binary;
}

function installInto(peer, staging, log) {
  if (peer.source === 'go') return goInstall(peer, staging, log);
  if (peer.source === 'go-module-schemas') return schemasInstall(peer, staging, log);
  if (peer.source === 'debian') return debianInstall(peer, staging, log);
  throw new Error(`peer ${peer.dir}: unknown source "${peer.source}"`);
}

/** Returns the path of the peer's binary, installing it first when it is not cached. */
export async function ensurePeer(name, { env = process.env, log = (msg) => process.stderr.write(`[peers] ${msg}\n`) } = {}) {
  const peer = peerSpec(name);
  if (peer.source === 'debian-system') return ensureSystemPeer(peer, env, log);
  const installDir = peerInstallDir(name, env);
  const binary = join(installDir, peer.binary);
  if (await isInstalled(peer, binary)) return binary;

  const binRoot = join(peersCacheDir(env), 'bin');
  await mkdir(binRoot, { recursive: true });
  const release = await acquireLock(join(binRoot, `${peer.dir}-${peer.version}.lock`), log);
  try {
    // Someone else may have finished the build while we waited for the lock.
    if (await isInstalled(peer, binary)) return binary;
    // Building next to the final directory keeps the rename on one file system, hence atomic:
    // readers see either no binary or a complete one, never a half-written file.
    const staging = await mkdtemp(join(binRoot, `.${peer.dir}-${peer.version}.build-`));
    try {
      await installInto(peer, staging, log);
      if (!(await isInstalled(peer, join(staging, peer.binary)))) {
        throw new Error(`installing ${peer.dir} ${peer.version} did not produce ${peer.binary}`);
      }
      // The files, not the directory, are renamed: an existing install dir (e.g. one a manual build
      // is writing into) is left alone rather than replaced. The binary goes last: it marks the install done.
      await mkdir(installDir, { recursive: true });
      for (const tool of peer.tools ?? []) await rename(join(staging, tool), join(installDir, tool));
      if (peer.source === 'go-module-schemas') {
        for (const file of await readdir(staging)) if (file !== peer.binary) await rename(join(staging, file), join(installDir, file));
      }
      await rename(join(staging, peer.binary), binary);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  } finally {
    await release();
  }
  return binary;
}

export async function ensurePeers(names, options) {
  const paths = {};
  // One at a time: two Go builds at once on a small machine only slow each other down.
  for (const name of names) paths[name] = await ensurePeer(name, options);
  return paths;
}

async function main(argv) {
  const [command, target] = argv;
  if (command !== 'ensure' || !target) {
    process.stderr.write('usage: node scripts/peers.mjs ensure <minio|livekit|helm|kubeconform|kubernetes-schemas|prometheus|pocketsphinx|espeak-ng|chromium|all>\n');
    return 2;
  }
  const names = target === 'all' ? Object.keys(PEERS) : [target];
  for (const name of names) peerSpec(name);
  const paths = await ensurePeers(names);
  for (const name of names) process.stdout.write(`${paths[name]}\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`[peers] ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
