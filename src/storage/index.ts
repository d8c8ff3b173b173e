export { createS3Client, ensureBucket, isTransientS3Error, type S3ClientOptions } from './s3.js';
export { startEmbeddedS3, type EmbeddedS3, type EmbeddedS3Options } from './embedded-s3.js';
export { Spool, SpoolFile, type SpoolEntry } from './spool.js';
export { PartLimiter, type PartPermit } from './limiter.js';
export {
  abortMultipart,
  startSpoolUpload,
  type PartUploadedInfo,
  type SpoolUpload,
  type SpoolUploadOptions,
  type SpoolUploadResult,
} from './upload.js';
export { JournalWriter, readJournal, JOURNAL_SUFFIX, type JournalContents } from './journal.js';
export { CommitLog, repairJournals, commitLogBytes, DEFAULT_COMMIT_LOG_SEGMENT_BYTES, type CommitLogOptions, type JournalRepairReport } from './commit-log.js';
