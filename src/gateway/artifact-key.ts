/** What a live call hands the artifact vault (a leaf module, so the services and recordings need not import the vault). */
import type { ScryptParams } from '../crypto/index.js';

/** A client-key call's data key while it is live: its first client-key recording's, with that recording's salt. */
export interface ArtifactClientKey {
  salt: Uint8Array;
  scrypt?: ScryptParams;
  dataKey: Uint8Array;
}

/** The part of the vault a Call drives: staged while live, sealed when it ends. */
export interface ArtifactSealing {
  open(callId: string): void;
  holdClientKey(callId: string, key: ArtifactClientKey): void;
  finish(callId: string): Promise<void>;
}
