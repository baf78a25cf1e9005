import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcess, type ServerProcess } from './server-process';

/** Options of {@link startPrometheusServer}. */
export interface PrometheusServerOptions {
  /** `host:port` of every endpoint to scrape (loopback), each serving `/metrics`. */
  readonly targets: readonly string[];
  /** Scrape interval (default 1 s: tests wait on scraped values). */
  readonly scrapeIntervalMs?: number;
}

/** One series of an instant query. */
export interface PrometheusSeries {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

/** One exemplar a query_exemplars answer holds. */
export interface PrometheusExemplar {
  readonly seriesLabels: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A private Prometheus and its HTTP API. */
export interface PrometheusServer extends ServerProcess {
  /** Evaluates `expr` now: every series with its value. */
  query(expr: string): Promise<PrometheusSeries[]>;
  /** The value of a query that yields one series, or undefined when it yields none. */
  queryValue(expr: string): Promise<number | undefined>;
  /** The exemplars stored for `expr` over the last `sinceMs`. */
  exemplars(expr: string, sinceMs?: number): Promise<PrometheusExemplar[]>;
  /** Health and last error of each scrape target. */
  targets(): Promise<{ readonly scrapeUrl: string; readonly health: string; readonly lastError: string }[]>;
}

interface ApiAnswer<T> {
  readonly status: string;
  readonly data: T;
  readonly error?: string;
}

/**
 * A private `prometheus` (Debian's package) on a free loopback port with its own data directory,
 * scraping `targets` every `scrapeIntervalMs`, exemplar storage on; ready once `/-/ready` answers.
 * For tests that check what a real scraper reads from `/metrics`.
 *
 * @example
 * const prometheus = await startPrometheusServer({ targets: [`127.0.0.1:${port}`] });
 * await waitFor(async () => (await prometheus.queryValue('up')) === 1);
 */
export async function startPrometheusServer(options: PrometheusServerOptions): Promise<PrometheusServer> {
  const interval = `${options.scrapeIntervalMs ?? 1_000}ms`;
  const configDir = mkdtempSync(join(tmpdir(), 'prometheus-config-'));
  const configFile = join(configDir, 'prometheus.yml');
  writeFileSync(
    configFile,
    [
      'global:',
      `  scrape_interval: ${interval}`,
      `  scrape_timeout: ${interval}`,
      'scrape_configs:',
      '  - job_name: multiagents',
      '    static_configs:',
      `      - targets: [${options.targets.map((t) => `'${t}'`).join(', ')}]`,
      '',
    ].join('\n'),
  );
  const server = await startServerProcess(
    'prometheus',
    'prometheus',
    (port, dir) => [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--enable-feature=exemplar-storage',
      '--log.level=warn',
    ],
    (port) => `http://127.0.0.1:${port}`,
    async (port) => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/-/ready`)).status === 200;
      } catch {
        return false;
      }
    },
  );
  const api = async <T>(path: string, params: Record<string, string>): Promise<T> => {
    const res = await fetch(`${server.url}/api/v1/${path}?${new URLSearchParams(params).toString()}`);
    const answer = (await res.json()) as ApiAnswer<T>;
    if (answer.status !== 'success') throw new Error(`prometheus ${path}: ${answer.error ?? res.status}`);
    return answer.data;
  };
  const query = async (expr: string): Promise<PrometheusSeries[]> => {
    const data = await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(
      'query',
      {
        query: expr,
      },
    );
    return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  return {
    ...server,
    query,
    async queryValue(expr) {
      const result = await query(expr);
      if (result.length > 1) throw new Error(`${expr}: ${result.length} series, expected one`);
      return result[0]?.value;
    },
    async exemplars(expr, sinceMs = 10 * 60_000) {
      const now = Date.now() / 1000;
      const data = await api<
        {
          seriesLabels: Record<string, string>;
          exemplars: { labels: Record<string, string>; value: string }[];
        }[]
      >('query_exemplars', { query: expr, start: String(now - sinceMs / 1000), end: String(now + 60) });
      return data.flatMap((series) =>
        series.exemplars.map((e) => ({
          seriesLabels: series.seriesLabels,
          labels: e.labels,
          value: Number(e.value),
        })),
      );
    },
    async targets() {
      const data = await api<{ activeTargets: { scrapeUrl: string; health: string; lastError: string }[] }>(
        'targets',
        {},
      );
      return data.activeTargets.map(({ scrapeUrl, health, lastError }) => ({ scrapeUrl, health, lastError }));
    },
    async stop() {
      await server.stop();
      rmSync(configDir, { recursive: true, force: true });
    },
  };
}
