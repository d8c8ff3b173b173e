/**
 * callvault's Grafana dashboards as code (@grafana/grafana-foundation-sdk). `npm run dashboards` writes
 * the JSON to grafana/dashboards/; test/observability/dashboards.test.ts checks the committed JSON is what
 * this file builds, and test/observability/prometheus.test.ts runs every panel query on a real Prometheus.
 *
 * Only series that src/metrics/index.ts exports are used (prom-client's default metrics carry the
 * `callvault_` prefix there). Panels are the same on both dashboards: the overview aggregates the fleet,
 * the drill-down filters every selector on `instance="$instance"`.
 */
import {
  DashboardBuilder,
  DashboardCursorSync,
  DatasourceVariableBuilder,
  QueryVariableBuilder,
  RowBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  VariableRefresh,
  VariableSort,
  type Dashboard,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { LegendDisplayMode, LegendPlacement, VizLegendOptionsBuilder, GraphThresholdsStyleMode, GraphThresholdsStyleConfigBuilder } from '@grafana/grafana-foundation-sdk/common';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as TimeseriesPanelBuilder } from '@grafana/grafana-foundation-sdk/timeseries';

/** The Prometheus data source is chosen on import (or from the dropdown): panels refer to the variable. */
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' } as const;

/** Pipeline latency p99 above which the alert fires (grafana/alerts.yml); drawn on the latency panel. */
export const PIPELINE_P99_BUDGET_SECONDS = 0.15;

interface Query {
  expr: string;
  legend: string;
}

interface PanelSpec {
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  /** A dashed red line at this value. */
  threshold?: number;
}

interface Section {
  title: string;
  panels: PanelSpec[];
}

/**
 * How a dashboard narrows its selectors: `sel('callvault_x')` is the metric on the overview and
 * `callvault_x{instance="$instance"}` on the drill-down; `extra` adds matchers.
 */
type Selector = (metric: string, extra?: string) => string;

const fleet: Selector = (metric, extra) => (extra ? `${metric}{${extra}}` : metric);
const oneInstance: Selector = (metric, extra) => `${metric}{instance="$instance"${extra ? `, ${extra}` : ''}}`;

const RATE = '[$__rate_interval]';

function quantiles(histogram: string, sel: Selector, by: string[] = []): Query[] {
  const group = ['le', ...by].join(', ');
  const suffix = by.map((label) => ` {{${label}}}`).join('');
  return [0.5, 0.99].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (${group}) (rate(${sel(`${histogram}_bucket`)}${RATE})))`,
    legend: `p${q * 100}${suffix}`,
  }));
}

/** The panels, grouped in rows; `perInstance` breaks fleet-wide panels down by instance on the overview. */
function sections(sel: Selector, perInstance: boolean): Section[] {
  const instanceLegend = perInstance ? '{{instance}}' : 'gateway';
  const agg = (fn: string, expr: string) => (perInstance ? `${fn} by (instance) (${expr})` : `${fn}(${expr})`);
  return [
    {
      title: 'Calls',
      panels: [
        {
          title: 'Active calls (media streams) by source',
          description: 'Connected media streams: Twilio media streams and LiveKit participant tracks (callvault_active_streams).',
          unit: 'short',
          queries: [{ expr: `sum by (source) (${sel('callvault_active_streams')})`, legend: '{{source}}' }],
        },
        {
          title: 'Active recordings',
          description: 'Recordings in progress (callvault_active_recordings).',
          unit: 'short',
          queries: [{ expr: agg('sum', sel('callvault_active_recordings')), legend: instanceLegend }],
        },
        {
          title: 'Frames received per second',
          description: 'Media frames received, by source and track (callvault_frames_received_total).',
          unit: 'ops',
          queries: [{ expr: `sum by (source, track) (rate(${sel('callvault_frames_received_total')}${RATE}))`, legend: '{{source}} {{track}}' }],
        },
        {
          title: 'Frames dropped per second by reason',
          description: 'Media frames, or parts of frames, not recorded, by source and reason (callvault_frames_dropped_total).',
          unit: 'ops',
          queries: [{ expr: `sum by (source, reason) (rate(${sel('callvault_frames_dropped_total')}${RATE}))`, legend: '{{source}} {{reason}}' }],
        },
        {
          title: 'Streams refused per second by reason',
          description: 'New streams refused by admission control (callvault_streams_refused_total).',
          unit: 'ops',
          queries: [{ expr: `sum by (source, reason) (rate(${sel('callvault_streams_refused_total')}${RATE}))`, legend: '{{source}} {{reason}}' }],
        },
        {
          title: 'Streams closed per second by close code',
          description: 'Media streams closed, by source and WebSocket close code (callvault_streams_closed_total).',
          unit: 'ops',
          queries: [{ expr: `sum by (source, code) (rate(${sel('callvault_streams_closed_total')}${RATE}))`, legend: '{{source}} {{code}}' }],
        },
      ],
    },
    {
      title: 'Recordings',
      panels: [
        {
          title: 'Recordings started, completed and failed per minute',
          description:
            'Started (callvault_recordings_started_total) and finished by final status: completed, failed, interrupted by shutdown (callvault_recordings_finished_total).',
          unit: 'opm',
          queries: [
            { expr: `sum(rate(${sel('callvault_recordings_started_total')}${RATE})) * 60`, legend: 'started' },
            { expr: `sum by (status) (rate(${sel('callvault_recordings_finished_total')}${RATE})) * 60`, legend: '{{status}}' },
          ],
        },
        {
          title: 'Recording failures per minute by error code',
          description: 'Recordings that failed for good, by error code (callvault_recordings_failed_total).',
          unit: 'opm',
          queries: [{ expr: `sum by (reason) (rate(${sel('callvault_recordings_failed_total')}${RATE})) * 60`, legend: '{{reason}}' }],
        },
        {
          title: 'Pipeline latency p50 / p99',
          description: `Frame arrival until its encrypted bytes are in the spool (callvault_pipeline_latency_seconds). The line is the ${PIPELINE_P99_BUDGET_SECONDS * 1000} ms p99 budget of the CallvaultPipelineLatencyHigh alert.`,
          unit: 's',
          queries: quantiles('callvault_pipeline_latency_seconds', sel, perInstance ? ['instance'] : []),
          threshold: PIPELINE_P99_BUDGET_SECONDS,
        },
        {
          title: 'Finalisation latency p50 / p99',
          description: 'Stream stop until the recording object is complete in S3 (callvault_recording_finalization_seconds).',
          unit: 's',
          queries: quantiles('callvault_recording_finalization_seconds', sel),
        },
        {
          title: 'Recordings recovered at start-up by outcome',
          description: 'Recordings found in the spool at start-up, by outcome (callvault_recordings_recovered_total), over the dashboard range.',
          unit: 'short',
          queries: [{ expr: `sum by (outcome) (increase(${sel('callvault_recordings_recovered_total')}[$__range]))`, legend: '{{outcome}}' }],
        },
      ],
    },
    {
      title: 'Storage',
      panels: [
        {
          title: 'S3 part upload latency p50 / p99',
          description: 'Duration of S3 part uploads (callvault_s3_part_upload_duration_seconds).',
          unit: 's',
          queries: quantiles('callvault_s3_part_upload_duration_seconds', sel),
        },
        {
          title: 'S3 upload failures and retries per second',
          description:
            'Upload attempts that failed (callvault_s3_upload_failures_total); each is retried from the spool (callvault_s3_upload_retries_total).',
          unit: 'ops',
          queries: [
            { expr: `sum(rate(${sel('callvault_s3_upload_failures_total')}${RATE}))`, legend: 'failures' },
            { expr: `sum(rate(${sel('callvault_s3_upload_retries_total')}${RATE}))`, legend: 'retries' },
          ],
        },
        {
          title: 'S3 upload throughput',
          description: 'Encrypted bytes uploaded to S3 per second (callvault_s3_uploaded_bytes_total).',
          unit: 'Bps',
          queries: [{ expr: agg('sum', `rate(${sel('callvault_s3_uploaded_bytes_total')}${RATE})`), legend: instanceLegend }],
        },
        {
          title: 'S3 parts in flight',
          description: 'S3 parts held in memory and uploading, across all recordings (callvault_s3_parts_in_flight).',
          unit: 'short',
          queries: [{ expr: agg('sum', sel('callvault_s3_parts_in_flight')), legend: instanceLegend }],
        },
        {
          title: 'Upload backlog (recordings)',
          description: 'Recordings whose upload is waiting to be retried (callvault_upload_backlog_recordings).',
          unit: 'short',
          queries: [{ expr: agg('sum', sel('callvault_upload_backlog_recordings')), legend: instanceLegend }],
        },
        {
          title: 'Upload backlog (bytes)',
          description: 'Encrypted bytes in the spool waiting for an upload retry (callvault_upload_backlog_bytes).',
          unit: 'bytes',
          queries: [{ expr: agg('sum', sel('callvault_upload_backlog_bytes')), legend: instanceLegend }],
        },
        {
          title: 'Spool free disk',
          description: 'Free bytes under DATA_DIR, as last sampled (callvault_spool_free_bytes); below SPOOL_MIN_FREE_MIB new streams are refused.',
          unit: 'bytes',
          queries: [{ expr: agg('min', sel('callvault_spool_free_bytes')), legend: instanceLegend }],
        },
      ],
    },
    {
      title: 'Capacity',
      panels: [
        {
          title: 'Worker pool utilisation',
          description: 'Share of worker thread capacity in use since the process started (callvault_worker_pool_utilization_ratio).',
          unit: 'percentunit',
          queries: [{ expr: agg('max', sel('callvault_worker_pool_utilization_ratio')), legend: instanceLegend }],
        },
        {
          title: 'Worker queue depth',
          description: 'Pipeline batches waiting for a worker thread (callvault_worker_queue_depth).',
          unit: 'short',
          queries: [{ expr: agg('sum', sel('callvault_worker_queue_depth')), legend: instanceLegend }],
        },
        {
          title: 'Event-loop lag p50 / p99',
          description: 'Main-thread event-loop delay (prom-client default metrics, callvault_nodejs_eventloop_lag_p50_seconds / _p99_seconds).',
          unit: 's',
          queries: [
            { expr: agg('max', sel('callvault_nodejs_eventloop_lag_p50_seconds')), legend: `p50 ${instanceLegend}` },
            { expr: agg('max', sel('callvault_nodejs_eventloop_lag_p99_seconds')), legend: `p99 ${instanceLegend}` },
          ],
        },
        {
          title: 'Resident memory per active call',
          description:
            'process resident memory divided by active media streams (callvault_process_resident_memory_bytes / callvault_active_streams); no value while no call is active.',
          unit: 'bytes',
          queries: [
            {
              expr: `sum by (instance) (${sel('callvault_process_resident_memory_bytes')}) / (sum by (instance) (${sel('callvault_active_streams')}) > 0)`,
              legend: '{{instance}}',
            },
          ],
        },
        {
          title: 'Process memory',
          description: 'Resident memory and V8 heap in use (callvault_process_resident_memory_bytes, callvault_nodejs_heap_size_used_bytes).',
          unit: 'bytes',
          queries: [
            { expr: agg('sum', sel('callvault_process_resident_memory_bytes')), legend: `resident ${instanceLegend}` },
            { expr: agg('sum', sel('callvault_nodejs_heap_size_used_bytes')), legend: `heap used ${instanceLegend}` },
          ],
        },
        {
          title: 'Process CPU',
          description: 'CPU seconds per second of the gateway process, user and system (callvault_process_cpu_seconds_total).',
          unit: 'percentunit',
          queries: [{ expr: agg('sum', `rate(${sel('callvault_process_cpu_seconds_total')}${RATE})`), legend: instanceLegend }],
        },
      ],
    },
    {
      title: 'HTTP',
      panels: [
        {
          title: 'HTTP latency p99 by route and status',
          description: 'Request duration by route and status (callvault_http_request_duration_seconds).',
          unit: 's',
          queries: [
            {
              expr: `histogram_quantile(0.99, sum by (le, route, status) (rate(${sel('callvault_http_request_duration_seconds_bucket')}${RATE})))`,
              legend: '{{route}} {{status}}',
            },
          ],
        },
        {
          title: 'HTTP requests per second by route and status',
          description: 'Request rate by route and status (callvault_http_request_duration_seconds_count).',
          unit: 'reqps',
          queries: [
            {
              expr: `sum by (route, status) (rate(${sel('callvault_http_request_duration_seconds_count')}${RATE}))`,
              legend: '{{route}} {{status}}',
            },
          ],
        },
      ],
    },
  ];
}

function panel(spec: PanelSpec, id: number): TimeseriesPanelBuilder {
  const builder = new TimeseriesPanelBuilder()
    .id(id)
    .title(spec.title)
    .description(spec.description)
    .datasource(DATASOURCE)
    .unit(spec.unit)
    .min(0)
    .height(8)
    .span(8)
    .legend(new VizLegendOptionsBuilder().showLegend(true).displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom).calcs([]));
  if (spec.threshold !== undefined) {
    builder
      .thresholds(
        new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps([
          { value: null, color: 'green' },
          { value: spec.threshold, color: 'red' },
        ]),
      )
      .thresholdsStyle(new GraphThresholdsStyleConfigBuilder().mode(GraphThresholdsStyleMode.Dashed));
  }
  spec.queries.forEach((query, i) => {
    builder.withTarget(
      new DataqueryBuilder()
        .datasource(DATASOURCE)
        .refId(String.fromCharCode(65 + i))
        .expr(query.expr)
        .legendFormat(query.legend)
        .range(),
    );
  });
  return builder;
}

function base(uid: string, title: string, description: string): DashboardBuilder {
  return new DashboardBuilder(title)
    .uid(uid)
    .description(description)
    .tags(['callvault', 'generated'])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    .refresh('30s')
    .withVariable(new DatasourceVariableBuilder('datasource').label('Data source').type('prometheus'));
}

function addSections(builder: DashboardBuilder, list: Section[]): DashboardBuilder {
  let id = 1;
  for (const section of list) {
    builder.withRow(new RowBuilder(section.title).id(id++));
    for (const spec of section.panels) builder.withPanel(panel(spec, id++));
  }
  return builder;
}

/** The `instance` variable: every gateway Prometheus scrapes (each exports its process start time). */
export const INSTANCE_VARIABLE_QUERY = 'label_values(callvault_process_start_time_seconds, instance)';

export function overviewDashboard(): Dashboard {
  const builder = base(
    'callvault-overview',
    'callvault / Overview',
    'The callvault fleet: calls, recordings, storage, capacity and HTTP. Generated from grafana/dashboards.ts; do not edit in Grafana.',
  );
  return addSections(builder, sections(fleet, true)).build();
}

export function instanceDashboard(): Dashboard {
  const builder = base(
    'callvault-instance',
    'callvault / Instance',
    'One callvault gateway (the instance variable): the overview panels filtered on its instance label. Generated from grafana/dashboards.ts; do not edit in Grafana.',
  ).withVariable(
    new QueryVariableBuilder('instance')
      .label('Instance')
      .datasource(DATASOURCE)
      .query(INSTANCE_VARIABLE_QUERY)
      .definition(INSTANCE_VARIABLE_QUERY)
      .refresh(VariableRefresh.OnTimeRangeChanged)
      .sort(VariableSort.AlphabeticalAsc)
      .multi(false)
      .includeAll(false),
  );
  return addSections(builder, sections(oneInstance, false)).build();
}

/** File name (under grafana/dashboards/) to its JSON text, exactly as committed. */
export function renderDashboards(): Map<string, string> {
  return new Map([
    ['callvault-overview.json', `${JSON.stringify(overviewDashboard(), null, 2)}\n`],
    ['callvault-instance.json', `${JSON.stringify(instanceDashboard(), null, 2)}\n`],
  ]);
}
