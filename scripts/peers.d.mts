export type PeerName = 'minio' | 'livekit' | 'k6';
export interface PeerSpec {
  dir: string;
  module: string;
  version: string;
  binary: string;
}
export interface EnsureOptions {
  env?: NodeJS.ProcessEnv;
  log?: (message: string) => void;
}
export const PEERS: Readonly<Record<PeerName, PeerSpec>>;
export function peersCacheDir(env?: NodeJS.ProcessEnv): string;
export function peerInstallDir(name: PeerName, env?: NodeJS.ProcessEnv): string;
export function peerBinaryPath(name: PeerName, env?: NodeJS.ProcessEnv): string;
export function ensurePeer(name: PeerName, options?: EnsureOptions): Promise<string>;
export function ensurePeers(names: PeerName[], options?: EnsureOptions): Promise<Record<PeerName, string>>;
