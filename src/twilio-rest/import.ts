/**
 * Brings a Twilio-side recording in: download the dual-channel WAV with the account's credentials, encrypt it
 * with the call's recording options, store it, link it to the call, and delete it from Twilio when configured.
 * A SignalWire-side recording comes in the same way from the project's Space (its Twilio-compatible API), with
 * SignalWire's identifiers (UUIDs) and `source: 'signalwire'` on the call and the recording.
 */
import { parseWav } from '../audio/wav.js';
import { UUID_PATTERN } from '../config/index.js';
import { CallvaultError, ErrorCode } from '../errors/index.js';
import type { Call } from '../db/index.js';
import {
  agentRecordingOptions,
  layerRecordingOptions,
  openClientKey,
  twilioRequestKeyContext,
  type GatewayPort,
  type PartialRecordingOptions,
  type CarrierAccount,
  type StoreFinishedResult,
  type TwilioRecordingRef,
} from '../gateway/port.js';
import { createTwilioRestClient, downloadRecordingWav } from '../twilio-client/index.js';

const CALL_SID = { twilio: /^CA[0-9a-fA-F]{32}$/, signalwire: UUID_PATTERN } as const;

/** The call row a Twilio recording belongs to; one is created (already ended) for a call the gateway never saw. */
async function callFor(gateway: GatewayPort, orgId: string, account: CarrierAccount, callSid: string, startedAt: Date): Promise<Call> {
  const known = await gateway.db.calls.getByExternalId(orgId, callSid, account.carrier);
  if (known) return known;
  const created = await gateway.db.calls.upsertActive({
    orgId,
    source: account.carrier,
    externalId: callSid,
    startedAt,
    metadata: { accountSid: account.accountSid },
  });
  return gateway.db.calls.end(created.id, new Date(gateway.now()));
}

/** Options it was requested with through the API, then the call's agent policy, then the server default. */
async function optionsFor(gateway: GatewayPort, orgId: string, call: Call, recordingSid: string) {
  const request = await gateway.db.imports.twilioRequest(orgId, recordingSid);
  const requested: PartialRecordingOptions | undefined = request
    ? {
        ...(request.stereo === null ? {} : { stereo: request.stereo }),
        ...(request.keyId && request.sealedKey
          ? { key: openClientKey(gateway.options.keyring, twilioRequestKeyContext(orgId, recordingSid), request.keyId, request.sealedKey) }
          : {}),
      }
    : undefined;
  const agentId = typeof call.metadata['agentId'] === 'string' ? call.metadata['agentId'] : undefined;
  const agent = await agentRecordingOptions(gateway.db, gateway.options.keyring, orgId, agentId);
  return layerRecordingOptions(gateway.options.recording.defaults, agent, requested);
}

export async function importTwilioRecording(gateway: GatewayPort, account: CarrierAccount, ref: TwilioRecordingRef): Promise<StoreFinishedResult> {
  const { carrier } = account;
  if (!CALL_SID[carrier].test(ref.callSid)) {
    throw new CallvaultError(ErrorCode.BadRequest, carrier === 'signalwire' ? 'not a SignalWire call SID' : 'not a Twilio CallSid', {
      details: { callSid: ref.callSid },
    });
  }
  const orgId = account.org;
  const { db } = gateway;
  const already = await db.imports.findByExternalSid(orgId, carrier, ref.recordingSid);
  if (already) return { outcome: 'duplicate', ...already };

  const startedAt = ref.startTime ?? new Date(gateway.now());
  const call = await callFor(gateway, orgId, account, ref.callSid, startedAt);
  const options = await optionsFor(gateway, orgId, call, ref.recordingSid);
  const rest = { baseUrl: account.apiBaseUrl, carrier };
  const wav = parseWav(await downloadRecordingWav(account, ref.recordingSid, { ...rest, signal: AbortSignal.timeout(120_000) }));
  if (wav.bitsPerSample !== 16 || (wav.channels !== 1 && wav.channels !== 2)) {
    throw new CallvaultError(ErrorCode.BadRequest, 'Twilio recording is not 16-bit mono or stereo PCM', {
      details: { bitsPerSample: wav.bitsPerSample, channels: wav.channels },
    });
  }
  const result = await gateway.storeFinishedRecording({
    orgId,
    callId: call.id,
    callExternalId: ref.callSid,
    source: carrier,
    externalSid: ref.recordingSid,
    options,
    audio: { sampleRate: wav.sampleRate, channels: wav.channels, pcm: wav.data },
    startedAt,
    metadata: {
      ...(carrier === 'signalwire' ? { signalwireRecordingSid: ref.recordingSid } : { twilioRecordingSid: ref.recordingSid }),
      accountSid: account.accountSid,
      originalSampleRate: wav.sampleRate,
      originalChannels: wav.channels,
      recordingOptions: { stereo: options.stereo === true, keyMode: options.key ? 'client' : 'server' },
      ...(ref.details ? { [carrier]: ref.details } : {}),
    },
  });
  if (result.outcome === 'stored') {
    await db.imports.deleteTwilioRequest(orgId, ref.recordingSid);
    // Twilio's copy goes only once S3 holds ours: a copy still waiting in one gateway's spool is not yet safe.
    if (gateway.options.twilio.deleteAfterImport && result.status === 'completed') {
      try {
        await createTwilioRestClient(account, rest).recordings(ref.recordingSid).remove();
        const deletedAt = new Date(gateway.now()).toISOString();
        await db.recordings.mergeMetadata(result.id, carrier === 'signalwire' ? { deletedFromSignalWireAt: deletedAt } : { deletedFromTwilioAt: deletedAt });
      } catch (err) {
        // The copy here is complete; a recording left at Twilio is a cost, not a loss, and is logged for follow-up.
        gateway.options.logger.warn({ recordingSid: result.recordingSid, twilioRecordingSid: ref.recordingSid, err }, 'could not delete the recording from Twilio');
      }
    }
  }
  return result;
}
