/**
 * Recording policy layers and the sealing of client keys held at rest (an agent's key, the key a Twilio-side
 * recording was requested with). Precedence everywhere: listener/instance options, then the agent's, then
 * the server default, field by field.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { RecordingOptionsSchema, type RecordingOptions } from '../config/index.js';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Database } from '../db/index.js';
import type { MasterKeyring } from './services.js';

export type PartialRecordingOptions = Partial<RecordingOptions>;

const SEAL_VERSION = 1;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const utf8 = new TextEncoder();

export interface SealedKey {
  keyId: string;
  sealed: Uint8Array;
}

/**
 * AES-256-GCM under the current master key. The AAD binds the master key id and `context` (organisation and
 * owner), so a sealed key copied onto another agent or organisation fails to open.
 */
export function sealClientKey(keyring: MasterKeyring, context: string, clientKey: string): SealedKey {
  const nonce = randomBytes(NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', keyring.current, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(utf8.encode(`${keyring.currentId}\0${context}`));
  const body = Buffer.concat([cipher.update(utf8.encode(clientKey)), cipher.final()]);
  return { keyId: keyring.currentId, sealed: Buffer.concat([Buffer.of(SEAL_VERSION), nonce, body, cipher.getAuthTag()]) };
}

export function openClientKey(keyring: MasterKeyring, context: string, keyId: string, sealed: Uint8Array): string {
  const masterKey = keyring.all.get(keyId);
  if (!masterKey) throw new CallvaultError(ErrorCode.KeyUnknown, 'master key id is not in the keyring', { details: { keyId } });
  if (sealed.length < 1 + NONCE_LENGTH + TAG_LENGTH || sealed[0] !== SEAL_VERSION) {
    throw new CallvaultError(ErrorCode.KeyUnwrapFailed, 'sealed client key is malformed', { details: { keyId } });
  }
  const decipher = createDecipheriv('aes-256-gcm', masterKey, sealed.subarray(1, 1 + NONCE_LENGTH), { authTagLength: TAG_LENGTH });
  decipher.setAAD(utf8.encode(`${keyId}\0${context}`));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_LENGTH, sealed.length - TAG_LENGTH)), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new CallvaultError(ErrorCode.KeyUnwrapFailed, 'sealed client key failed authentication', { cause, details: { keyId } });
  }
}

export function agentKeyContext(orgId: string, agentId: string): string {
  return `agent\0${orgId}\0${agentId}`;
}

export function twilioRequestKeyContext(orgId: string, twilioRecordingSid: string): string {
  return `twilio-recording\0${orgId}\0${twilioRecordingSid}`;
}

/** The agent's policy as recording options (with its client key opened), or undefined when it has none. */
export async function agentRecordingOptions(
  db: Database,
  keyring: MasterKeyring,
  orgId: string,
  agentId: string | undefined,
): Promise<PartialRecordingOptions | undefined> {
  if (!agentId) return undefined;
  const policy = await db.agents.get(orgId, agentId);
  if (!policy) return undefined;
  return {
    enabled: policy.enabled,
    ...(policy.stereo === null ? {} : { stereo: policy.stereo }),
    ...(policy.agentIdentity ? { agentIdentity: policy.agentIdentity } : {}),
    ...(policy.keyId && policy.sealedKey ? { key: openClientKey(keyring, agentKeyContext(orgId, agentId), policy.keyId, policy.sealedKey) } : {}),
  };
}

/** Field by field: instance (listener) > agent > server default. */
export function layerRecordingOptions(
  defaults: RecordingOptions,
  agent: PartialRecordingOptions | undefined,
  instance: PartialRecordingOptions | undefined,
): RecordingOptions {
  return RecordingOptionsSchema.parse({ ...defaults, ...agent, ...instance });
}
