import { z } from 'zod';
import { RecordingOptionsSchema, type RecordingOptions } from '../../config/index.js';
import { CallvaultError, ErrorCode } from '../../errors/index.js';

const PartialRecordingOptionsSchema = RecordingOptionsSchema.partial();
type PartialRecordingOptions = Partial<RecordingOptions>;

/** A room's or participant's metadata as a JSON object; anything else (empty, plain text) is no metadata. */
export function parseMetadata(raw: string | undefined | null): Record<string, unknown> | null {
  if (!raw) return null;
  try {
    const value: unknown = JSON.parse(raw);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The platform's id of the conversation a room is: a short printable string. */
const ConversationIdSchema = z.string().regex(/^[\x21-\x7e]{1,200}$/);

/** `conversationId` in the room's JSON metadata, when it is a usable id (1 to 200 printable ASCII characters). */
export function roomConversationId(roomMetadata: string | undefined | null): string | undefined {
  const parsed = ConversationIdSchema.safeParse(parseMetadata(roomMetadata)?.['conversationId']);
  return parsed.success ? parsed.data : undefined;
}

function validated(value: unknown, where: string): PartialRecordingOptions | undefined {
  if (value === undefined) return undefined;
  const parsed = PartialRecordingOptionsSchema.safeParse(value);
  if (!parsed.success) {
    throw new CallvaultError(ErrorCode.RecordingOptionsInvalid, `${where} recording options are invalid`, {
      details: { issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) },
    });
  }
  return parsed.data;
}

/** `recording` of a participant's metadata (the listener/instance level). */
export function participantRecordingOptions(metadata: string | undefined | null): PartialRecordingOptions | undefined {
  return validated(parseMetadata(metadata)?.['recording'], 'participant metadata');
}

/**
 * The agent-level options a room's metadata carries: `options.recording` as agent platforms write it, or a
 * top-level `recording`, which wins when both are present.
 */
export function roomRecordingOptions(metadata: string | undefined | null): PartialRecordingOptions | undefined {
  const meta = parseMetadata(metadata);
  if (!meta) return undefined;
  const options = meta['options'];
  const agentLevel =
    options !== null && typeof options === 'object' ? validated((options as Record<string, unknown>)['recording'], 'room metadata options') : undefined;
  const roomLevel = validated(meta['recording'], 'room metadata');
  if (!agentLevel && !roomLevel) return undefined;
  return { ...agentLevel, ...roomLevel };
}

/** Identities the room's metadata names as the agent (`agentIdentity` or `agentIdentities`). */
export function agentIdentitiesOf(roomMetadata: string | undefined | null): Set<string> {
  const meta = parseMetadata(roomMetadata);
  const identities = new Set<string>();
  if (!meta) return identities;
  const single = meta['agentIdentity'];
  if (typeof single === 'string' && single) identities.add(single);
  const list = meta['agentIdentities'];
  if (Array.isArray(list)) for (const id of list) if (typeof id === 'string' && id) identities.add(id);
  return identities;
}

/**
 * Who is the room's agent, by the usual precedence: the `agentIdentity` option of the API request, then of
 * the participant metadata's `recording`, then of the room metadata's recording options, then the room
 * metadata's top-level `agentIdentity` / `agentIdentities`; empty when none names one (the agent policy's
 * `agentIdentity` is the last resort, once the policy is known: see `agentIdentitiesWith`).
 */
export function namedAgentIdentities(layers: {
  roomMetadata: string | undefined | null;
  room?: PartialRecordingOptions | undefined;
  participant?: PartialRecordingOptions | undefined;
  request?: PartialRecordingOptions | undefined;
}): Set<string> {
  const explicit = layers.request?.agentIdentity ?? layers.participant?.agentIdentity ?? layers.room?.agentIdentity;
  return explicit ? new Set([explicit]) : agentIdentitiesOf(layers.roomMetadata);
}

/**
 * Where to look for the agent policy (`/api/agents/{agentId}`): the room metadata's `agentId` first (as a
 * Twilio stream's `agentId` parameter selects one), then each named agent identity.
 */
export function agentPolicyCandidates(roomMetadata: string | undefined | null, named: ReadonlySet<string>): string[] {
  const agentId = parseMetadata(roomMetadata)?.['agentId'];
  const candidates = typeof agentId === 'string' && agentId ? [agentId] : [];
  for (const identity of named) if (!candidates.includes(identity)) candidates.push(identity);
  return candidates;
}

/** The named identities, or else the one the agent policy names (the lowest level that names one). */
export function agentIdentitiesWith(named: ReadonlySet<string>, policy: PartialRecordingOptions | undefined): Set<string> {
  if (named.size > 0) return new Set(named);
  return policy?.agentIdentity ? new Set([policy.agentIdentity]) : new Set();
}

export interface RecordingOptionsLayers {
  defaults: RecordingOptions;
  /** The agent's policy (`/api/agents/{agentId}`, by the agent participant's identity). */
  agent?: PartialRecordingOptions | undefined;
  room?: PartialRecordingOptions | undefined;
  participant?: PartialRecordingOptions | undefined;
  /** An explicit API request wins over everything it sets. */
  request?: PartialRecordingOptions | undefined;
}

/**
 * Field by field: request > participant metadata `recording` > room metadata (`options.recording`) > agent
 * policy > server default. `requested` tells whether any metadata or request asked for a recording at all:
 * neither the server default nor a stored agent policy alone starts one from a webhook (metadata is what
 * says this room is meant to be recorded; the policy only shapes how).
 */
export function resolveRecordingOptions(layers: RecordingOptionsLayers): { options: RecordingOptions; requested: boolean } {
  const merged = { ...layers.defaults, ...layers.agent, ...layers.room, ...layers.participant, ...layers.request };
  const options = RecordingOptionsSchema.parse(merged);
  return { options, requested: Boolean(layers.room || layers.participant || layers.request) };
}

/**
 * The policy of the first of the room's agent identities that has one (identities in the order the room
 * metadata names them), or undefined. `policyOf` is `agentRecordingOptions` bound to the organisation.
 */
export async function agentPolicyOf(
  identities: Iterable<string>,
  policyOf: (agentId: string) => Promise<PartialRecordingOptions | undefined>,
): Promise<PartialRecordingOptions | undefined> {
  for (const identity of identities) {
    const policy = await policyOf(identity);
    if (policy) return policy;
  }
  return undefined;
}
