/**
 * The dashboards are code (grafana/dashboards.ts): the committed JSON must be exactly what the code builds
 * (`npm run dashboards` rewrites it), and every series a panel or an alert rule names must be one the
 * gateway exports. Whether the queries run is proven on a real Prometheus in prometheus.test.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { GatewayMetrics } from '../../dist/metrics/index.js';
import { renderDashboards } from '../../grafana/dashboards.js';
import { DASHBOARDS_DIR, alertRules, callvaultMetricNames, committedDashboards, panelTargets } from './support.js';

/** Every sample name the gateway's registry can expose: histograms as their _bucket, _sum and _count series. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = new GatewayMetrics();
  const names = new Set<string>();
  for (const line of (await metrics.render()).body.split('\n')) {
    const match = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (!match) continue;
    const [, name, type] = match as unknown as [string, string, string];
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    else names.add(name);
  }
  return names;
}

describe('dashboards as code', () => {
  test('the committed JSON under grafana/dashboards/ is exactly what grafana/dashboards.ts builds', () => {
    const built = renderDashboards();
    const committed = readdirSync(DASHBOARDS_DIR).filter((name) => name.endsWith('.json')).sort();
    expect(committed, 'run `npm run dashboards`').toEqual([...built.keys()].sort());
    for (const [name, text] of built) expect(readFileSync(`${DASHBOARDS_DIR}${name}`, 'utf8'), `${name}: run \`npm run dashboards\``).toBe(text);
  });

  test('grafana/alerts.yml has the six alerts, each with an expression', () => {
    const rules = alertRules();
    expect([...rules.keys()]).toEqual([
      'CallvaultRecordingsFailing',
      'CallvaultUploadBacklogGrowing',
      'CallvaultS3UploadErrors',
      'CallvaultPipelineLatencyHigh',
      'CallvaultEventLoopLagHigh',
      'CallvaultGatewayDown',
    ]);
    expect(rules.get('CallvaultRecordingsFailing')).toContain('rate(callvault_recordings_failed_total[5m])');
    expect(rules.get('CallvaultPipelineLatencyHigh')).toMatch(/histogram_quantile\(0\.99, .*callvault_pipeline_latency_seconds_bucket.*> 0\.15$/);
    expect(rules.get('CallvaultGatewayDown')).toBe('up{job="callvault"} == 0');
  });

  test('every metric a panel or an alert rule selects is exported by the gateway', async () => {
    const exported = await exportedNames();
    const used = [...panelTargets().map((t) => t.expr), ...alertRules().values()].flatMap(callvaultMetricNames);
    expect(used.length).toBeGreaterThan(40);
    expect([...new Set(used)].filter((name) => !exported.has(name))).toEqual([]);
  });

  test('every panel queries the chosen Prometheus data source and has a unique id', () => {
    for (const [name, dashboard] of committedDashboards()) {
      expect(dashboard.templating.list.find((v) => v.name === 'datasource'), name).toMatchObject({ type: 'datasource', query: 'prometheus' });
      const ids = dashboard.panels.map((p) => (p as unknown as { id: number }).id);
      expect(new Set(ids).size, name).toBe(ids.length);
      for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
        expect((panel as unknown as { datasource: unknown }).datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
        expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      }
    }
  });

  test('the drill-down has an instance variable and filters every selector on it', () => {
    const instance = committedDashboards().get('callvault-instance.json')!;
    expect(instance.templating.list.find((v) => v.name === 'instance')).toMatchObject({
      type: 'query',
      query: 'label_values(callvault_process_start_time_seconds, instance)',
    });
    const targets = panelTargets().filter((t) => t.dashboard === 'callvault-instance');
    expect(targets.length).toBeGreaterThan(20);
    for (const { panel, expr } of targets) {
      const selectors = expr.match(/\bcallvault_[a-z0-9_]+(\{[^}]*\})?/g) ?? [];
      expect(selectors.length, panel).toBeGreaterThan(0);
      for (const selector of selectors) expect(selector, panel).toMatch(/\{instance="\$instance"/);
    }
  });

  test('the overview covers what the capacity issue asks for', () => {
    const overview = panelTargets().filter((t) => t.dashboard === 'callvault-overview');
    const names = new Set(overview.flatMap((t) => callvaultMetricNames(t.expr)));
    for (const name of [
      'callvault_active_streams',
      'callvault_frames_received_total',
      'callvault_frames_dropped_total',
      'callvault_recordings_started_total',
      'callvault_recordings_finished_total',
      'callvault_recordings_failed_total',
      'callvault_pipeline_latency_seconds_bucket',
      'callvault_recording_finalization_seconds_bucket',
      'callvault_s3_part_upload_duration_seconds_bucket',
      'callvault_s3_upload_failures_total',
      'callvault_upload_backlog_recordings',
      'callvault_upload_backlog_bytes',
      'callvault_spool_free_bytes',
      'callvault_worker_pool_utilization_ratio',
      'callvault_worker_queue_depth',
      'callvault_nodejs_eventloop_lag_p99_seconds',
      'callvault_process_resident_memory_bytes',
      'callvault_http_request_duration_seconds_bucket',
    ]) {
      expect(names.has(name), name).toBe(true);
    }
    const perCall = overview.find((t) => t.panel === 'Resident memory per active call')!;
    expect(perCall.expr).toMatch(/callvault_process_resident_memory_bytes.*\/.*callvault_active_streams/);
  });
});
