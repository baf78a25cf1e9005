import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetricName } from '@multiagents/metrics';
import { COMPOSE_FILE, environmentOf, loadCompose, readRepoFile, readYaml, ROOT } from './support/compose';
import { dashboardQueries, metricNamesOf, type GrafanaDashboard } from './support/dashboard';

const PROMETHEUS_CONFIG = 'infra/prometheus/prometheus.yml';
const DASHBOARD = 'infra/grafana/dashboards/multiagents.json';
const compose = loadCompose(COMPOSE_FILE);

function promtool(...args: string[]) {
  return spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8' });
}

interface ScrapeConfig {
  readonly job_name: string;
  readonly metrics_path?: string;
  readonly dns_sd_configs?: readonly { readonly names: readonly string[]; readonly port: number }[];
  readonly static_configs?: readonly { readonly targets: readonly string[] }[];
}

describe('infra/prometheus/prometheus.yml', () => {
  it('passes `promtool check config`', () => {
    const result = promtool('check', 'config', PROMETHEUS_CONFIG);
    expect(result.error).toBeUndefined();
    expect({ status: result.status, output: result.stdout + result.stderr }).toEqual({
      status: 0,
      output: expect.stringContaining('SUCCESS') as unknown,
    });
  });

  it('and promtool does refuse a broken one (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'promtool-'));
    try {
      writeFileSync(join(dir, 'bad.yml'), 'scrape_configs:\n  - job_name: x\n    scrape_interval: soon\n');
      expect(promtool('check', 'config', join(dir, 'bad.yml')).status).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('scrapes every metrics-collector replica on the HTTP_PORT where it serves /metrics', () => {
    const config = readYaml<{ scrape_configs: readonly ScrapeConfig[] }>(PROMETHEUS_CONFIG);
    const jobs = config.scrape_configs.filter((job) => job.dns_sd_configs !== undefined);
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) {
      expect(job.metrics_path ?? '/metrics').toBe('/metrics');
      for (const sd of job.dns_sd_configs ?? []) {
        for (const name of sd.names) {
          const service = compose.services[name];
          expect(service).toBeDefined();
          expect(String(sd.port)).toBe(environmentOf(service ?? {})['HTTP_PORT']);
        }
      }
    }
    // The app does serve /metrics on that port.
    expect(readRepoFile('apps/metrics-collector/src/main.ts')).toMatch(/health\.setRoute\('\/metrics'/);
  });
});

describe('infra/grafana', () => {
  const dashboard = JSON.parse(readRepoFile(DASHBOARD)) as GrafanaDashboard;
  const exported = new Set<string>(Object.values(MetricName));
  const histograms = [...exported].filter((name) => name.endsWith('_seconds'));

  it('provisions the Prometheus and Jaeger datasources the dashboard and its exemplars use', () => {
    const { datasources } = readYaml<{
      datasources: readonly { uid: string; type: string; url: string; jsonData?: Record<string, unknown> }[];
    }>('infra/grafana/provisioning/datasources/datasources.yml');
    expect(datasources.map((d) => [d.uid, d.type, d.url])).toEqual([
      ['prometheus', 'prometheus', 'http://prometheus:9090'],
      ['jaeger', 'jaeger', 'http://jaeger:16686'],
    ]);
    const uids = new Set(datasources.map((d) => d.uid));
    for (const panel of dashboard.panels) expect(uids).toContain(panel.datasource.uid);
    expect(compose.services['prometheus']?.ports?.[0]).toMatch(/:9090$/);
  });

  it('loads dashboards from the folder docker-compose.yml mounts', () => {
    const { providers } = readYaml<{ providers: readonly { options: { path: string } }[] }>(
      'infra/grafana/provisioning/dashboards/dashboards.yml',
    );
    const mounted = (compose.services['grafana']?.volumes ?? []).map((v) => v.split(':')[1]);
    for (const provider of providers) expect(mounted).toContain(provider.options.path);
  });

  it('is valid dashboard JSON: unique panel ids, every panel with a query', () => {
    expect(dashboard.uid).toBe('multiagents');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels) expect(panel.targets.length).toBeGreaterThan(0);
  });

  it('queries only metrics the metrics-collector exports', () => {
    const queries = dashboardQueries(dashboard);
    expect(queries.length).toBeGreaterThan(10);
    for (const query of queries) {
      const names = metricNamesOf(query);
      expect({ query, some: names.length > 0 }).toEqual({ query, some: true });
      for (const name of names) {
        const base = name.replace(/_(bucket|sum|count)$/, '');
        const known = exported.has(name) || (base !== name && histograms.includes(base));
        expect({ query, name, known }).toEqual({ query, name, known: true });
      }
    }
    // The check can fail: a misspelt name is not exported.
    expect(exported.has(metricNamesOf('rate(multiagents_run_finished_total[5m])')[0] ?? '')).toBe(false);
  });

  it('shows runs by outcome, step latency percentiles, retries, compensations, dead letters, consumer lag and live workers', () => {
    const used = new Set(dashboardQueries(dashboard).flatMap(metricNamesOf));
    for (const name of [
      MetricName.RunsFinished,
      `${MetricName.StepDuration}_bucket`,
      MetricName.StepRetries,
      MetricName.Compensations,
      MetricName.DeadLetters,
      MetricName.BusConsumerLag,
      MetricName.WorkerManagers,
      MetricName.WorkerReplicas,
    ]) {
      expect(used).toContain(name);
    }
    expect(dashboardQueries(dashboard).join('\n')).toMatch(
      /histogram_quantile\(0\.99, .*multiagents_step_duration_seconds_bucket/,
    );
  });
});
