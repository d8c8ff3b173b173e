/**
 * The Helm chart in deploy/helm/callvault, rendered by the real helm and validated by the real kubeconform, both
 * built by scripts/peers.mjs (pinned, cached). kubeconform reads the Kubernetes 1.34 API schemas made offline from
 * the OpenAPI definitions of the k8s.io/kubernetes Go module, and the ServiceMonitor schema from the Prometheus
 * Operator's CRD (`kubernetes-schemas` peer, scripts/k8s-json-schemas.mjs), in strict mode: an unknown field, a
 * wrong type or a missing required field fails. What is asserted about the rendered objects is read from helm's
 * output, parsed as YAML; nothing here runs a cluster.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { EnvFields, loadEnv } from '../../dist/config/index.js';
import { ensurePeer, PEERS, peerBinaryPath } from '../../scripts/peers.mjs';

const CHART = join(import.meta.dirname, '../../deploy/helm/callvault');
const KUBE_VERSION = '1.34.3';
// Building helm on a shared two-core machine takes several minutes the first time.
const PEER_BUILD_TIMEOUT_MS = 30 * 60 * 1000;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

interface KubeconformResource {
  filename: string;
  kind: string;
  name: string;
  version: string;
  status: string;
  msg: string;
}

let helm = '';
let kubeconform = '';
let schemaDir = '';
let root = '';

function run(command: string, args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HELM_CACHE_HOME: join(root, 'helm-cache'), HELM_CONFIG_HOME: join(root, 'helm-config'), HELM_DATA_HOME: join(root, 'helm-data') } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let valuesFiles = 0;
async function valuesFile(values: Record<string, unknown>): Promise<string> {
  // JSON is YAML: helm reads it as a values file.
  const path = join(root, `values-${valuesFiles++}.yaml`);
  await writeFile(path, JSON.stringify(values));
  return path;
}

async function template(values: Record<string, unknown>): Promise<Ran> {
  return run(helm, ['template', 'rec', CHART, '--namespace', 'recordings', '--kube-version', KUBE_VERSION, '-f', await valuesFile(values)]);
}

async function render(values: Record<string, unknown>): Promise<{ text: string; objects: K8sObject[] }> {
  const result = await template(values);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const objects = parseAllDocuments(result.stdout)
    .map((doc) => {
      expect(doc.errors).toEqual([]);
      return doc.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
  return { text: result.stdout, objects };
}

async function validate(manifests: string): Promise<{ code: number | null; resources: KubeconformResource[]; summary: Record<string, number> }> {
  const file = join(root, `manifests-${valuesFiles++}.yaml`);
  await writeFile(file, manifests);
  const result = await run(kubeconform, [
    '-strict',
    '-summary',
    '-verbose',
    '-output',
    'json',
    '-kubernetes-version',
    KUBE_VERSION,
    '-schema-location',
    `${schemaDir}/{{ .ResourceKind }}{{ .KindSuffix }}.json`,
    file,
  ]);
  const report = JSON.parse(result.stdout) as { resources?: KubeconformResource[]; summary: Record<string, number> };
  return { code: result.code, resources: report.resources ?? [], summary: report.summary };
}

function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0]!;
}

/** Rendered objects are walked by path in the assertions. */
type Any = any;

/** A gateway on real PostgreSQL and S3, three replicas, secrets from the chart, a ServiceMonitor. */
const EXTERNAL: Record<string, unknown> = {
  replicaCount: 3,
  image: { repository: 'registry.example.com/callvault', tag: '0.1.0' },
  command: ['node', 'dist/main.js'],
  config: {
    PUBLIC_URL: 'https://rec.example.com',
    S3_ENDPOINT: 'https://s3.eu-west-1.amazonaws.com',
    S3_REGION: 'eu-west-1',
    S3_BUCKET: 'example-recordings',
    SHUTDOWN_DEADLINE_SECONDS: '120',
    TWILIO_RECORDING_POLLING: 'true',
  },
  secrets: {
    values: {
      MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
      DATABASE_URL: 'postgres://callvault:secret@db.example.com:5432/callvault',
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'example-secret',
      TWILIO_ACCOUNTS: `acme:AC${'0'.repeat(32)}:token`,
    },
  },
  persistence: { size: '50Gi', storageClassName: 'fast-ssd' },
  service: { type: 'LoadBalancer', port: 443, annotations: { 'service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout': '3600' } },
  serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' } },
  topologySpreadConstraints: [
    { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'callvault' } } },
  ],
};

/** The same, with a Secret managed outside the chart. */
const EXISTING_SECRET: Record<string, unknown> = {
  ...EXTERNAL,
  replicaCount: 2,
  secrets: { create: false, existingSecret: 'callvault-prod', values: {} },
  serviceMonitor: { enabled: false },
  podDisruptionBudget: { enabled: false },
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'callvault-helm-'));
  helm = await ensurePeer('helm');
  kubeconform = await ensurePeer('kubeconform');
  schemaDir = dirname(await ensurePeer('kubernetes-schemas'));
}, PEER_BUILD_TIMEOUT_MS);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the callvault Helm chart', () => {
  test('the validator is the real one, offline, and refuses what the API server refuses', async () => {
    // `go install` builds carry no version string of their own (kubeconform -v says "development"): the pin is in
    // the install path, which names the version (scripts/peers.mjs).
    expect(kubeconform).toBe(peerBinaryPath('kubeconform'));
    expect(kubeconform).toContain(`kubeconform-${PEERS.kubeconform.version}/`);
    expect(helm).toContain(`helm-${PEERS.helm.version}/`);
    const index = JSON.parse(await readFile(join(schemaDir, 'index.json'), 'utf8')) as { sources: { module: string; version: string }[]; files: string[] };
    expect(index.sources.map((s) => `${s.module}@${s.version}`)).toEqual(['k8s.io/kubernetes@v1.34.3', 'github.com/prometheus-operator/prometheus-operator@v0.85.0']);
    expect(index.files).toEqual(expect.arrayContaining(['statefulset-apps-v1.json', 'service-v1.json', 'poddisruptionbudget-policy-v1.json', 'servicemonitor-monitoring-v1.json']));
    // A kind it has no schema for is an error, not a silent pass.
    const unknown = await validate('apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n');
    expect(unknown.code).not.toBe(0);
    expect(unknown.summary['errors']).toBe(1);
  });

  test.each([
    ['embedded defaults', {}],
    ['PostgreSQL and S3, three replicas, ServiceMonitor', EXTERNAL],
    ['an existing Secret', EXISTING_SECRET],
  ])('helm lint --strict passes: %s', async (_name, values) => {
    const result = await run(helm, ['lint', CHART, '--strict', '--kube-version', KUBE_VERSION, '-f', await valuesFile(values)]);
    expect(result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(result.code).toBe(0);
  });

  test.each([
    ['embedded defaults', {}, ['ConfigMap', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'StatefulSet']],
    ['PostgreSQL and S3, three replicas, ServiceMonitor', EXTERNAL, ['ConfigMap', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceMonitor', 'StatefulSet']],
    ['an existing Secret', EXISTING_SECRET, ['ConfigMap', 'Service', 'Service', 'StatefulSet']],
  ])('every rendered manifest is valid against the Kubernetes API schemas: %s', async (_name, values, kinds) => {
    const { text, objects } = await render(values);
    expect(objects.map((o) => o.kind).sort()).toEqual(kinds);
    const report = await validate(text);
    expect(report.resources.filter((r) => r.status !== 'statusValid')).toEqual([]);
    expect(report.summary).toMatchObject({ valid: kinds.length, invalid: 0, errors: 0, skipped: 0 });
    expect(report.code).toBe(0);
  });

  test('embedded defaults: one gateway, its volume, probes, shutdown timing and identity', async () => {
    const { objects } = await render({});
    const sts: Any = only(objects, 'StatefulSet');
    expect(sts.metadata.name).toBe('rec-callvault');
    expect(sts.spec.replicas).toBe(1);
    expect(sts.spec.serviceName).toBe('rec-callvault-headless');
    const pod = sts.spec.template.spec;
    const [container] = pod.containers;
    expect(container.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    // 5 s preStop pause + SHUTDOWN_DEADLINE_SECONDS 30 + 5 s finalise grace + 10 s to release resources.
    expect(pod.terminationGracePeriodSeconds).toBe(50);
    expect(container.lifecycle.preStop.exec.command).toEqual(['node', '-e', 'setTimeout(() => {}, 5000)']);
    expect(container.env).toEqual(
      expect.arrayContaining([
        { name: 'DATA_DIR', value: '/data' },
        { name: 'GATEWAY_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        // Kubernetes expands $(GATEWAY_ID), defined just before it, into the pod's name.
        { name: 'INTERNAL_URL', value: expect.stringMatching(/^http:\/\/\$\(GATEWAY_ID\)\.[a-z0-9-]+-headless\.[a-z0-9-]+\.svc:8080$/) },
      ]),
    );
    expect(container.volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    expect(sts.spec.volumeClaimTemplates).toHaveLength(1);
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('20Gi');
    expect(sts.spec.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
    expect(container.resources).toEqual({ requests: { cpu: '700m', memory: '384Mi' }, limits: { memory: '1Gi' } });
    // Nothing secret in the ConfigMap; no empty value passed on (the gateway's defaults apply).
    const config: Any = only(objects, 'ConfigMap');
    expect(config.data).toEqual({
      PORT: '8080',
      S3_BUCKET: 'callvault-recordings',
      S3_REGION: 'us-east-1',
      SHUTDOWN_DEADLINE_SECONDS: '30',
      WORKER_THREADS: '2',
      SPOOL_MIN_FREE_MIB: '512',
      LOG_LEVEL: 'info',
    });
    expect(only(objects, 'Secret')['stringData']).toEqual({});
    const headless: Any = only(objects, 'Service', 'rec-callvault-headless');
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    const pdb: Any = only(objects, 'PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(sts.spec.selector.matchLabels);
  });

  test('PostgreSQL and S3: secrets only in the Secret, grace period from SHUTDOWN_DEADLINE_SECONDS, ServiceMonitor on the headless Service', async () => {
    const { objects } = await render(EXTERNAL);
    const sts: Any = only(objects, 'StatefulSet');
    expect(sts.spec.replicas).toBe(3);
    const pod = sts.spec.template.spec;
    expect(pod.terminationGracePeriodSeconds).toBe(5 + 120 + 5 + 10);
    const [container] = pod.containers;
    expect(container.image).toBe('registry.example.com/callvault:0.1.0');
    expect(container.envFrom).toEqual([{ configMapRef: { name: 'rec-callvault' } }, { secretRef: { name: 'rec-callvault' } }]);
    const secret: Any = only(objects, 'Secret');
    expect(Object.keys(secret.stringData).sort()).toEqual(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'DATABASE_URL', 'MASTER_KEY', 'TWILIO_ACCOUNTS']);
    expect(secret.stringData.DATABASE_URL).toBe('postgres://callvault:secret@db.example.com:5432/callvault');
    const config: Any = only(objects, 'ConfigMap');
    const secretValues = Object.values((EXTERNAL['secrets'] as { values: Record<string, string> }).values);
    for (const value of Object.values(config.data as Record<string, string>)) expect(secretValues).not.toContain(value);
    expect(config.data.S3_ENDPOINT).toBe('https://s3.eu-west-1.amazonaws.com');
    const monitor: Any = only(objects, 'ServiceMonitor');
    expect(monitor.metadata.labels.release).toBe('kube-prometheus-stack');
    expect(monitor.spec.endpoints).toEqual([{ port: 'http', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
    // It selects exactly one of the two Services (no pod scraped twice): the headless one.
    const services = objects.filter((o) => o.kind === 'Service');
    const selected = services.filter((s) => Object.entries(monitor.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => s.metadata.labels?.[k] === v));
    expect(selected.map((s) => s.metadata.name)).toEqual(['rec-callvault-headless']);
    // grafana/alerts.yml expects the scrape job "callvault": the job label comes from this Service label.
    expect(selected[0]!.metadata.labels?.[monitor.spec.jobLabel as string]).toBe('callvault');
    const main: Any = only(objects, 'Service', 'rec-callvault');
    expect(main.spec.type).toBe('LoadBalancer');
    expect(main.spec.ports).toEqual([{ name: 'http', port: 443, targetPort: 'http', protocol: 'TCP' }]);
  });

  test.each([
    ['a probe period that is not a number', { probes: { readiness: { periodSeconds: 'ten', timeoutSeconds: 3, failureThreshold: 2, successThreshold: 1 } } }, /readinessProbe\/periodSeconds': got string, want integer/],
    ['a misspelt field in an extra environment variable', { extraEnv: [{ name: 'X', valueFrm: 'y' }] }, /additional properties 'valueFrm' not allowed/],
    ['a label value that is not a string', { podLabels: { team: { name: 'voice' } } }, /labels\/team': got object, want string/],
    ['a ServiceMonitor interval that is not a duration', { serviceMonitor: { enabled: true, interval: 'half a minute', scrapeTimeout: '10s' } }, /interval': 'half a minute' does not match pattern/, 'ServiceMonitor/rec-callvault'],
  ])('an invalid manifest fails validation: %s', async (_name, values, message, resource = 'StatefulSet/rec-callvault') => {
    const { text } = await render(values);
    const report = await validate(text);
    expect(report.code).not.toBe(0);
    expect(report.summary['invalid']).toBe(1);
    const invalid = report.resources.filter((r) => r.status === 'statusInvalid');
    expect(invalid.map((r) => `${r.kind}/${r.name}`)).toEqual([resource]);
    expect(invalid[0]!.msg).toMatch(message);
  });

  test.each([
    ['embedded defaults', {}],
    ['PostgreSQL and S3, three replicas, ServiceMonitor', EXTERNAL],
  ])('the environment the pod gets is one the gateway accepts, every name one it reads: %s', async (_name, values) => {
    const { objects } = await render(values);
    const [container] = (only(objects, 'StatefulSet') as Any).spec.template.spec.containers;
    const env: Record<string, string> = {
      ...((only(objects, 'ConfigMap') as Any).data as Record<string, string>),
      ...((only(objects, 'Secret') as Any).stringData as Record<string, string>),
    };
    // Values from the pod's fields are its name; $(NAME) references are expanded as the kubelet does.
    for (const entry of container.env as { name: string; value?: string }[]) {
      env[entry.name] = (entry.value ?? 'rec-callvault-0').replace(/\$\(([A-Z_]+)\)/g, (_m, name: string) => env[name] ?? '');
    }
    // The AWS SDK reads the S3 credentials itself.
    const readElsewhere = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];
    const known = new Set([...Object.keys(EnvFields.shape), ...readElsewhere]);
    expect(Object.keys(env).filter((name) => !known.has(name))).toEqual([]);
    const parsed = loadEnv(env);
    expect(parsed.PORT).toBe(container.ports[0].containerPort);
    expect(parsed.DATA_DIR).toBe(container.volumeMounts.find((m: { name: string }) => m.name === 'data').mountPath);
    expect(parsed.SHUTDOWN_DEADLINE_SECONDS).toBe(values === EXTERNAL ? 120 : 30);
    expect(parsed.WORKER_THREADS).toBe(2);
    expect(parsed.GATEWAY_ID).toBe('rec-callvault-0');
    expect(parsed.INTERNAL_URL).toMatch(/^http:\/\/rec-callvault-0\.[a-z0-9-]+-headless\.[a-z0-9-]+\.svc:8080\/?$/);
  });

  test.each([
    ['several replicas on embedded storage', { replicaCount: 2 }, 'replicaCount above 1 needs DATABASE_URL'],
    ['a secret in the ConfigMap', { config: { DATABASE_URL: 'postgres://x@db/x' } }, 'config.DATABASE_URL is a secret'],
    ['an unknown secret name', { secrets: { values: { MASTER_KEYS: 'x' } } }, 'secrets.values.MASTER_KEYS is not one of the variables'],
    ['a fractional shutdown deadline', { config: { SHUTDOWN_DEADLINE_SECONDS: '2.5' } }, 'config.SHUTDOWN_DEADLINE_SECONDS must be a whole number'],
  ])('the chart refuses values that would deploy something broken: %s', async (_name, values, message) => {
    const result = await template(values);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });
});
