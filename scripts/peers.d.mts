export type PeerName = 'minio' | 'livekit' | 'prometheus';
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
export type PeerSpec = GoPeerSpec | DebianPeerSpec;
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
