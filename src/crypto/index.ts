export {
  createEncryptor,
  encryptChunk,
  parseHeader,
  CONTAINER_VERSION,
  DATA_KEY_LENGTH,
  DEFAULT_SEGMENT_SIZE,
  MAX_HEADER_LENGTH,
  SALT_LENGTH,
  TAG_LENGTH,
  type ContainerHeader,
  type CreateEncryptorParams,
  type EncryptorState,
  type KeyMode,
  type SampleFormat,
} from './container.js';
export {
  ciphertextRangeForPlaintext,
  segmentSpan,
  decryptSegmentRun,
  decryptStream,
  plaintextSize,
  type CiphertextRange,
  type DataKeyResolver,
} from './decrypt.js';
export {
  assertClientKeyStrong,
  deriveClientDataKey,
  estimateClientKeyBits,
  generateDataKey,
  generateSalt,
  unwrapDataKey,
  wrapDataKey,
  CLIENT_DATA_KEY_INFO,
  MIN_CLIENT_KEY_BITS,
  WRAPPED_KEY_LENGTH,
} from './keys.js';
export { decryptRecordingToWav, type DecryptToWavOptions, type DecryptToWavResult } from './to-wav.js';
