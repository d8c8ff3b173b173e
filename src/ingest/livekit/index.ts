export { registerLivekitIngest, EGRESS_CLOSE_CODES, LIVEKIT_ROOM_RECORDING_PATH, LIVEKIT_WEBHOOK_PATH } from './route.js';
export { parseEgressTextFrame } from './egress-frame.js';
export {
  signEgressUrl,
  verifyEgressQuery,
  LIVEKIT_EGRESS_PATH,
  EGRESS_URL_KEY_INFO,
  DEFAULT_EGRESS_SAMPLE_RATE,
  DEFAULT_SIGNED_URL_MAX_LIFETIME_MS,
  type EgressTarget,
  type VerifiedEgressTarget,
} from './egress-url.js';
export { LivekitRoomRecorder, type LivekitIngestConfig, type StartedRoomRecording } from './room-recorder.js';
export { LivekitRoomSession, RoomTrackInput, type RoomSessionInit } from './room-session.js';
export { RoomParticipant, mintRecorderToken, GATEWAY_IDENTITY_PREFIX, PARTICIPANT_SAMPLE_RATE, type LivekitConnection } from './room-participant.js';
export { EventLoopWatch, processLoopWatch, DEFAULT_LOOP_WATCH_PERIOD_MS, type LoopStallClock } from './loop-watch.js';
export { TrackTimeline, DEFAULT_GAP_THRESHOLD_MS, type TrackTimelineOptions } from './timeline.js';
export {
  agentIdentitiesOf,
  agentIdentitiesWith,
  agentPolicyCandidates,
  namedAgentIdentities,
  agentPolicyOf,
  parseMetadata,
  participantRecordingOptions,
  resolveRecordingOptions,
  roomRecordingOptions,
  type RecordingOptionsLayers,
} from './room-options.js';
