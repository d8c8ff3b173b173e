import { init } from './0001_init.js';
import { manage } from './0002_manage.js';
import { elevenlabs } from './0003_elevenlabs.js';
import { durability } from './0004_durability.js';
import { uploading } from './0005_uploading.js';
import { openUploads } from './0006_open_uploads.js';
import { keyScopes } from './0007_key_scopes.js';
import { signalwire } from './0008_signalwire.js';
import { agentIdentity } from './0009_agent_identity.js';
import { callArtifacts } from './0010_call_artifacts.js';
import { transcriptions } from './0012_transcriptions.js';
import { retention } from './0013_retention.js';
import { transcriptImports } from './0014_transcript_imports.js';
import { sealedArtifacts } from './0016_sealed_artifacts.js';
import { fleet } from './0015_fleet.js';
import { spoolCheckpoints } from './0017_spool_checkpoints.js';
import type { Migration } from './migration.js';

export type { Migration };

export const migrations: readonly Migration[] = [init, manage, elevenlabs, durability, uploading, openUploads, keyScopes, signalwire, agentIdentity, callArtifacts, transcriptions, retention, transcriptImports, fleet, sealedArtifacts, spoolCheckpoints];
