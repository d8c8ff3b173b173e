import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';

/** The `status` values of callvault_recordings_finished_total. */
export const RECORDING_FINAL_STATUSES = ['completed', 'failed', 'interrupted'] as const;

/**
 * One registry per gateway rather than prom-client's global one, so several gateways can live in one
 * process (tests, embedded use) without their series colliding.
 */
export class GatewayMetrics {
  readonly registry = new Registry();

  readonly activeStreams = new Gauge({
    name: 'callvault_active_streams',
    help: 'Media streams currently connected, by source.',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly activeRecordings = new Gauge({
    name: 'callvault_active_recordings',
    help: 'Recordings in progress.',
    registers: [this.registry],
  });
  readonly framesReceived = new Counter({
    name: 'callvault_frames_received_total',
    help: 'Media frames received, by source and track.',
    labelNames: ['source', 'track'] as const,
    registers: [this.registry],
  });
  readonly bytesReceived = new Counter({
    name: 'callvault_received_bytes_total',
    help: 'Audio payload bytes received, by source.',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly framesDropped = new Counter({
    name: 'callvault_frames_dropped_total',
    help: 'Media frames (or parts of frames) not recorded, by reason.',
    labelNames: ['source', 'reason'] as const,
    registers: [this.registry],
  });
  readonly pipelineRebuilds = new Counter({
    name: 'callvault_pipeline_rebuilds_total',
    help: 'Calls whose pipeline state was rebuilt from the journal after its worker thread died, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly streamsClosed = new Counter({
    name: 'callvault_streams_closed_total',
    help: 'Media streams closed, by source and close code.',
    labelNames: ['source', 'code'] as const,
    registers: [this.registry],
  });
  readonly pipelineLatency = new Histogram({
    name: 'callvault_pipeline_latency_seconds',
    help: 'Frame arrival until its encrypted bytes are written to the spool.',
    // Fine around the 150 ms goal, so its p99 can be read off.
    buckets: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly partUploadDuration = new Histogram({
    name: 'callvault_s3_part_upload_duration_seconds',
    help: 'Duration of S3 part uploads.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly partUploadFailures = new Counter({
    name: 'callvault_s3_upload_failures_total',
    help: 'Recording uploads that failed.',
    registers: [this.registry],
  });
  readonly uploadedBytes = new Counter({
    name: 'callvault_s3_uploaded_bytes_total',
    help: 'Encrypted bytes uploaded to S3.',
    registers: [this.registry],
  });
  readonly partsInFlight = new Gauge({
    name: 'callvault_s3_parts_in_flight',
    help: 'S3 parts held in memory and uploading, across all recordings.',
    registers: [this.registry],
  });
  readonly finalizationLatency = new Histogram({
    name: 'callvault_recording_finalization_seconds',
    help: 'Stream stop until the recording object is complete in S3.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly recordingsStarted = new Counter({
    name: 'callvault_recordings_started_total',
    help: 'Recordings started (spool and journal open; each one then counts once in callvault_recordings_finished_total).',
    registers: [this.registry],
  });
  readonly recordingsFailed = new Counter({
    name: 'callvault_recordings_failed_total',
    help: 'Recordings that failed for good, by error code.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly uploadRetries = new Counter({
    name: 'callvault_s3_upload_retries_total',
    help: 'Upload attempts that failed and are retried from the spool.',
    registers: [this.registry],
  });

  readonly recordingsRecovered = new Counter({
    name: 'callvault_recordings_recovered_total',
    help: 'Recordings found in the spool at start-up, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  /** Spool files whose upload is waiting to be retried; their sizes are the backlog in bytes. */
  readonly uploadBacklog = new Set<{ readonly size: number }>();

  /** Recordings waiting for an upload retry, and their spooled bytes: one count for the gauges and /readyz. */
  uploadBacklogTotals(): { recordings: number; bytes: number } {
    let bytes = 0;
    for (const file of this.uploadBacklog) bytes += file.size;
    return { recordings: this.uploadBacklog.size, bytes };
  }

  readonly uploadBacklogRecordings: Gauge = new Gauge({
    name: 'callvault_upload_backlog_recordings',
    help: 'Recordings whose upload is waiting to be retried.',
    registers: [this.registry],
    collect: (): void => this.uploadBacklogRecordings.set(this.uploadBacklog.size),
  });

  readonly uploadBacklogBytes: Gauge = new Gauge({
    name: 'callvault_upload_backlog_bytes',
    help: 'Encrypted bytes in the spool of recordings whose upload is waiting to be retried.',
    registers: [this.registry],
    collect: (): void => this.uploadBacklogBytes.set(this.uploadBacklogTotals().bytes),
  });

  readonly recordingsFinished = new Counter({
    name: 'callvault_recordings_finished_total',
    help: 'Recordings finished, by final status.',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly retentionDeletions = new Counter({
    name: 'callvault_retention_deletions_total',
    help: 'Recordings deleted by the retention sweeper, by outcome (deleted, or failed to delete and left for the next sweep).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'callvault_http_request_duration_seconds',
    help: 'HTTP request duration by route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly spoolFreeBytes = new Gauge({
    name: 'callvault_spool_free_bytes',
    help: 'Free bytes available to the gateway under DATA_DIR, as last sampled.',
    registers: [this.registry],
  });
  readonly streamsRefused = new Counter({
    name: 'callvault_streams_refused_total',
    help: 'New streams refused by admission control, by source and error code.',
    labelNames: ['source', 'reason'] as const,
    registers: [this.registry],
  });
  /** Where the worker pool's utilisation is read from, at scrape time (the gateway sets it). */
  workerUtilizationSource: (() => number) | null = null;
  readonly workerUtilization = new Gauge({
    name: 'callvault_worker_pool_utilization_ratio',
    help: 'Share of worker thread capacity in use since start.',
    registers: [this.registry],
    // Read when scraped, not on every tick: piscina computes it from a histogram summary, which is costly.
    collect: () => {
      if (this.workerUtilizationSource) this.workerUtilization.set(this.workerUtilizationSource());
    },
  });
  readonly workerQueueDepth = new Gauge({
    name: 'callvault_worker_queue_depth',
    help: 'Pipeline batches waiting for a worker thread.',
    registers: [this.registry],
  });

  readonly fleetInterruptedRecordings = new Gauge({
    name: 'callvault_fleet_interrupted_recordings',
    help: 'Recordings interrupted across the fleet (their gateway stopped heartbeating), as of the last heartbeat.',
    registers: [this.registry],
  });
  readonly recordingsMarkedInterrupted = new Counter({
    name: 'callvault_recordings_marked_interrupted_total',
    help: 'Recordings of a dead peer this gateway marked interrupted.',
    registers: [this.registry],
  });
  readonly fleetLeaseHeld = new Gauge({
    name: 'callvault_fleet_lease_held',
    help: 'Fleet-wide jobs whose lease this gateway holds (1) or not (0), by lease.',
    labelNames: ['lease'] as const,
    registers: [this.registry],
  });
  readonly spoolCheckpoints = new Counter({
    name: 'callvault_spool_checkpoints_total',
    help: 'Spool checkpoints of live recordings to S3 (SPOOL_CHECKPOINT_SECONDS), by outcome (uploaded, failed).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly spoolCheckpointRequests = new Counter({
    name: 'callvault_spool_checkpoint_requests_total',
    help: 'S3 requests made for spool checkpoints (writing, cleaning up, taking over), by operation (put, get, list, delete).',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly recordingsTakenOver = new Counter({
    name: 'callvault_recordings_taken_over_total',
    help: 'Interrupted recordings of a dead peer this gateway took over and finished from their spool checkpoints, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly heartbeatFailures = new Counter({
    name: 'callvault_fleet_heartbeat_failures_total',
    help: 'Heartbeats or lease renewals that could not be written to PostgreSQL.',
    registers: [this.registry],
  });

  constructor() {
    // Event-loop lag, process memory and the other standard process series.
    collectDefaultMetrics({ register: this.registry, prefix: 'callvault_' });
    // A labelled counter's series appears at its first increment, and rate() cannot see an increase into a
    // series' first sample: the final statuses (a closed set) start at 0 so the first completion or failure shows.
    for (const status of RECORDING_FINAL_STATUSES) this.recordingsFinished.inc({ status }, 0);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
