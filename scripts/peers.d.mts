export type PeerName = 'minio' | 'livekit' | 'helm' | 'kubeconform' | 'kubernetes-schemas' | 'prometheus' | 'pocketsphinx' | 'espeak-ng' | 'chromium';
export interface GoPeerSpec {
  source: 'go';
  dir: string;
  module: string;
  version: string;
  binary: string;
  tools?: undefined;
}
export interface DebianPeerSpec {
  source: 'debian';
  dir: string;
  /** Debian package name; `version` is its exact Debian version. */
  package: string;
  version: string;
  binary: string;
  tools?: readonly string[];
}
/** Debian packages installed into the system (apt-get install, as root); `binary` is an absolute path. */
export interface DebianSystemPeerSpec {
  source: 'debian-system';
  dir: string;
  version: string;
  /** Package name → its exact Debian version. */
  packages: Readonly<Record<string, string>>;
  binary: string;
  tools?: undefined;
}
export interface GoModuleFile {
  module: string;
  version: string;
  /** A file inside the module. */
  file: string;
}
/** JSON schemas for kubeconform, made from files of Go modules (`go mod download`); `binary` is their index. */
export interface GoModuleSchemasPeerSpec {
  source: 'go-module-schemas';
  dir: string;
  version: string;
  binary: string;
  /** The Kubernetes API's OpenAPI (swagger 2) definitions. */
  openapi: GoModuleFile;
  /** CustomResourceDefinitions as JSON. */
  crds: readonly GoModuleFile[];
  tools?: undefined;
}
export type PeerSpec = GoPeerSpec | DebianPeerSpec | GoModuleSchemasPeerSpec | DebianSystemPeerSpec;
export interface EnsureOptions {
  env?: NodeJS.ProcessEnv;
  log?: (message: string) => void;
}
export const PEERS: Readonly<Record<PeerName, PeerSpec>>;
export function peersCacheDir(env?: NodeJS.ProcessEnv): string;
export function peerInstallDir(name: PeerName, env?: NodeJS.ProcessEnv): string;
export function peerBinaryPath(name: PeerName, env?: NodeJS.ProcessEnv): string;
export function peerToolPath(name: PeerName, tool: string, env?: NodeJS.ProcessEnv): string;
export function ensurePeer(name: PeerName, options?: EnsureOptions): Promise<string>;
export function ensurePeers(names: PeerName[], options?: EnsureOptions): Promise<Record<PeerName, string>>;
