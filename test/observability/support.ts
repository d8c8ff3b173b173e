/** Reads the committed dashboards and alert rules the way Grafana and Prometheus see them. */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DASHBOARDS_DIR = fileURLToPath(new URL('../../grafana/dashboards/', import.meta.url));
export const ALERTS_FILE = fileURLToPath(new URL('../../grafana/alerts.yml', import.meta.url));
export const ALERTS_TEST_FILE = fileURLToPath(new URL('../../grafana/alerts.test.yml', import.meta.url));

export interface PanelTarget {
  dashboard: string;
  panel: string;
  refId: string;
  expr: string;
}

interface DashboardJson {
  uid: string;
  panels: { type: string; title: string; targets?: { refId: string; expr: string }[] }[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

export function committedDashboards(): Map<string, DashboardJson> {
  const files = readdirSync(DASHBOARDS_DIR).filter((name) => name.endsWith('.json')).sort();
  return new Map(files.map((name) => [name, JSON.parse(readFileSync(`${DASHBOARDS_DIR}${name}`, 'utf8')) as DashboardJson]));
}

/** Every query of every panel of the committed dashboards. */
export function panelTargets(): PanelTarget[] {
  const out: PanelTarget[] = [];
  for (const [, dashboard] of committedDashboards()) {
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? []) out.push({ dashboard: dashboard.uid, panel: panel.title, refId: target.refId, expr: target.expr });
    }
  }
  return out;
}

/** The `expr:` of each rule in grafana/alerts.yml, by alert name (the file's layout is fixed: one rule per `- alert:`). */
export function alertRules(): Map<string, string> {
  const text = readFileSync(ALERTS_FILE, 'utf8');
  const rules = new Map<string, string>();
  const pattern = /- alert: (\S+)\n\s+expr: (>-\n((?:\s{10}.*\n)+)|(.*)\n)/g;
  for (const match of text.matchAll(pattern)) {
    const expr = match[3] !== undefined ? match[3].split('\n').map((l) => l.trim()).filter(Boolean).join(' ') : match[4]!;
    rules.set(match[1]!, expr.trim());
  }
  return rules;
}

/** Metric names a PromQL expression selects (callvault's own; `up` and functions are not). */
export function callvaultMetricNames(expr: string): string[] {
  return [...new Set(expr.match(/\bcallvault_[a-z0-9_]+/g) ?? [])];
}

/** Replaces Grafana's template variables with concrete values; throws on one it does not know. */
export function substitute(expr: string, values: Record<string, string>): string {
  const out = expr.replace(/\$(__[a-z_]+|[a-z_]+)|\$\{([a-z_]+)\}/gi, (whole, plain?: string, braced?: string) => {
    const name = (plain ?? braced)!;
    const value = values[name];
    if (value === undefined) throw new Error(`no value for template variable ${whole} in ${expr}`);
    return value;
  });
  return out;
}
