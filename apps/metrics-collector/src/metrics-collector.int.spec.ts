/**
 * The metrics-collector as it runs in production: its own process next to an orchestrator and
 * two worker-managers (each its own process) over a private redis-server, scraped by a real
 * Prometheus on loopback. Order runs are started from the test (as an API client would); the
 * scraped values must equal the runs done, and a kill -9 of the collector must lose no event.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openBackend, type Backend } from '@multiagents/backends';
import { isTerminalRunState, RunState, Topics } from '@multiagents/contracts';
import { Orchestrator, parseDefinition } from '@multiagents/core';
import {
  freePort,
  parseMetricsText,
  ServiceProcess,
  startPrometheusServer,
  startRedisServer,
  sumSamples,
  waitFor,
  type MetricSample,
  type PrometheusServer,
  type ServerProcess,
} from '@multiagents/testing';
import { readFileSync } from 'node:fs';
import Redis from 'ioredis';

const REPO_ROOT = join(__dirname, '..', '..', '..');
const WORKFLOW_FILE = join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml');
const PARTITIONS = 2;
/** Every wait on a condition is bounded by this. */
const WAIT_MS = 60_000;

interface Stack {
  readonly redis: ServerProcess;
  readonly adapters: Backend;
  readonly collector: ServiceProcess;
  readonly managers: readonly ServiceProcess[];
  readonly services: ServiceProcess[];
  readonly starter: Orchestrator;
  readonly traceIds: Set<string>;
  readonly prefix: string;
  stop(): Promise<void>;
}

let stackCount = 0;

async function startStack(collectorEnv: Record<string, string> = {}): Promise<Stack> {
  const redis = await startRedisServer();
  const prefix = `mc-int-${++stackCount}`;
  const env = {
    MULTIAGENTS_BACKEND: 'redis',
    REDIS_URL: redis.url,
    MULTIAGENTS_REDIS_PARTITIONS: String(PARTITIONS),
    MULTIAGENTS_PREFIX: prefix,
    LOG_LEVEL: 'warn',
  };
  const logDir = join(REPO_ROOT, 'tmp', 'metrics-collector-int', prefix);
  const orchestrator = new ServiceProcess(
    'orchestrator',
    join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
    { ...env, MULTIAGENTS_DEFINITIONS: WORKFLOW_FILE, GRPC_PORT: String(await freePort()) },
    logDir,
    await freePort(),
  );
  const managers = await Promise.all(
    [0, 1].map(
      async (i) =>
        new ServiceProcess(
          `worker-manager-${i}`,
          join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
          {
            ...env,
            MULTIAGENTS_WORKER_MODULES: join(REPO_ROOT, 'examples/order-processing/dist/service-workers.js'),
          },
          logDir,
          await freePort(),
        ),
    ),
  );
  const collector = new ServiceProcess(
    'metrics-collector',
    join(REPO_ROOT, 'apps/metrics-collector/dist/main.js'),
    { ...env, ...collectorEnv },
    logDir,
    await freePort(),
  );
  const services = [orchestrator, ...managers, collector];
  await Promise.all(services.map((s) => s.start()));
  const adapters = await openBackend({
    backend: 'redis',
    redisUrl: redis.url,
    redisPartitions: PARTITIONS,
    prefix,
  });
  const traceIds = new Set<string>();
  let n = 0;
  // Each run gets a sampled trace of its own, as the tracing observer would give it.
  const starter = new Orchestrator({
    ...adapters,
    timerPollIntervalMs: 0,
    observer: {
      runStarting: () => {
        const traceId = (++n).toString(16).padStart(32, 'a');
        traceIds.add(traceId);
        return { traceparent: `00-${traceId}-00f067aa0ba902b7-01` };
      },
    },
  });
  await starter.registerWorkflow(parseDefinition(readFileSync(WORKFLOW_FILE, 'utf8')));
  return {
    redis,
    adapters,
    collector,
    managers,
    services,
    starter,
    traceIds,
    prefix,
    async stop() {
      await Promise.all(services.map((s) => s.stop()));
      await adapters.close().catch(() => undefined);
      await redis.stop();
    },
  };
}

/**
 * Starts orders `from` to `to - 1` (every 10th fails at shipping), 20 at a time; resolves with
 * their txIds.
 */
async function startOrders(stack: Stack, to: number, from = 0): Promise<string[]> {
  const txIds: string[] = [];
  let next = from;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < to) {
        const i = next++;
        const { txId } = await stack.starter.startWorkflow('order_processing', {
          orderId: `o-${i}`,
          total: 10 + (i % 7),
          failShipping: (i + 1) % 10 === 0,
        });
        txIds.push(txId);
      }
    }),
  );
  return txIds;
}

async function waitForTerminal(stack: Stack, txIds: readonly string[]): Promise<void> {
  await waitFor(
    async () => {
      const counts = await stack.adapters.runs.countByState();
      return (counts.completed ?? 0) + (counts.compensated ?? 0) === txIds.length;
    },
    { timeoutMs: WAIT_MS, intervalMs: 100, description: `${txIds.length} runs terminal` },
  );
  for (const txId of txIds) {
    const stored = await stack.adapters.runs.get(txId);
    expect(stored !== undefined && isTerminalRunState(stored.run.state)).toBe(true);
  }
}

async function scrape(service: ServiceProcess, accept?: string): Promise<{ text: string; type: string }> {
  const res = await fetch(`http://127.0.0.1:${service.httpPort}/metrics`, {
    headers: accept === undefined ? {} : { accept },
  });
  expect(res.status).toBe(200);
  return { text: await res.text(), type: res.headers.get('content-type') ?? '' };
}

async function samplesOf(service: ServiceProcess): Promise<MetricSample[]> {
  return parseMetricsText((await scrape(service)).text);
}

describe('metrics-collector service (real processes, Redis, Prometheus)', () => {
  beforeAll(() => {
    execFileSync(
      'bash',
      [
        'scripts/build-quiet.sh',
        '@multiagents/orchestrator',
        '@multiagents/worker-manager',
        '@multiagents/metrics-collector',
        '@multiagents/example-order-processing',
      ],
      { cwd: REPO_ROOT, stdio: 'inherit', timeout: 300_000 },
    );
  }, 300_000);

  it('serves what Prometheus scrapes: values equal the runs done, exemplars carry trace ids, promtool passes', async () => {
    const stack = await startStack();
    let prometheus: PrometheusServer | undefined;
    try {
      prometheus = await startPrometheusServer({ targets: [`127.0.0.1:${stack.collector.httpPort}`] });
      const n = 200;
      const txIds = await startOrders(stack, n);
      await waitForTerminal(stack, txIds);
      const compensated = n / 10;
      const completed = n - compensated;
      const expected: Record<string, number> = {
        'sum(multiagents_runs_started_total{workflow="order_processing"})': n,
        'sum(multiagents_runs_finished_total{outcome="completed"})': completed,
        'sum(multiagents_runs_finished_total{outcome="compensated"})': compensated,
        'sum(multiagents_run_duration_seconds_count)': n,
        'multiagents_runs{state="completed"}': completed,
        'multiagents_runs{state="compensated"}': compensated,
        'sum(multiagents_step_executions_total{outcome="completed"})': 3 * completed + 2 * compensated,
        'sum(multiagents_step_executions_total{step="ship_order",outcome="failed"})': compensated,
        'sum(multiagents_compensations_total{outcome="completed"})': 2 * compensated,
        'sum(multiagents_step_duration_seconds_count)': 3 * n,
        multiagents_worker_managers: 2,
        'multiagents_worker_replicas{worker="shipping.ship"}': 2,
        'multiagents_bus_consumer_lag{topic="events",group="metrics-collector"}': 0,
        'multiagents_bus_consumer_pending{topic="results",group="orchestrators"}': 0,
        'multiagents_dead_letters{topic="events"}': 0,
        'multiagents_build_info{backend="redis"}': 1,
        'sum(multiagents_collector_events_rejected_total)': 0,
        up: 1,
      };
      const read = async (): Promise<Record<string, number | undefined>> => {
        const entries = await Promise.all(
          Object.keys(expected).map(async (expr) => [
            expr,
            await (prometheus as PrometheusServer).queryValue(expr),
          ]),
        );
        return Object.fromEntries(entries) as Record<string, number | undefined>;
      };
      let last: Record<string, number | undefined> = {};
      await waitFor(
        async () => {
          last = await read();
          return Object.entries(expected).every(([expr, value]) => last[expr] === value);
        },
        { timeoutMs: WAIT_MS, intervalMs: 250, description: 'scraped values equal to the runs done' },
      ).catch(() => undefined);
      expect(last).toEqual(expected);
      // Prometheus parsed the OpenMetrics it asked for, and kept the exemplars: our runs' trace ids.
      expect(await prometheus.targets()).toEqual([
        { scrapeUrl: `http://127.0.0.1:${stack.collector.httpPort}/metrics`, health: 'up', lastError: '' },
      ]);
      const exemplars = await prometheus.exemplars('multiagents_run_duration_seconds_bucket');
      expect(exemplars.length).toBeGreaterThan(0);
      for (const exemplar of exemplars)
        expect(stack.traceIds.has(exemplar.labels['trace_id'] ?? '')).toBe(true);
      // The classic text format passes promtool's checks (names, units, _total, HELP).
      const classic = await scrape(stack.collector);
      expect(classic.type).toContain('text/plain; version=0.0.4');
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: classic.text, encoding: 'utf8' });
      expect({ status: promtool.status, output: `${promtool.stdout}${promtool.stderr}` }).toEqual({
        status: 0,
        output: '',
      });
      const open = await scrape(stack.collector, 'application/openmetrics-text;version=1.0.0');
      expect(open.type).toContain('application/openmetrics-text; version=1.0.0');
      expect(open.text.endsWith('# EOF\n')).toBe(true);
    } finally {
      await prometheus?.stop();
      await stack.stop();
    }
  }, 240_000);

  it('loses no event to a kill -9: the new process handles exactly what the dead one had not acknowledged', async () => {
    const stack = await startStack({ MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '1000' });
    const raw = new Redis(stack.redis.url);
    try {
      const streams = Array.from({ length: PARTITIONS }, (_, p) => `${stack.prefix}:{p${p}}:x:events`);
      /** Σ over partitions of what the collector's group acknowledged: read minus pending. */
      const acknowledged = async (): Promise<number> => {
        let sum = 0;
        for (const stream of streams) {
          const groups = (await raw.xinfo('GROUPS', stream)) as unknown[][];
          for (const group of groups) {
            const field = (name: string): unknown => group[group.indexOf(name) + 1];
            if (field('name') === 'metrics-collector')
              sum += Number(field('entries-read')) - Number(field('pending'));
          }
        }
        return sum;
      };
      const first = 400;
      const late = 20;
      const n = first + late;
      const starting = startOrders(stack, first);
      // The kill lands once the collector has counted some finished runs, with runs in flight.
      await waitFor(
        async () => sumSamples(await samplesOf(stack.collector), 'multiagents_runs_finished_total') >= 20,
        {
          timeoutMs: WAIT_MS,
          intervalMs: 20,
          description: 'the collector counted 20 finished runs',
        },
      );
      // However fast the machine ran the first orders, `late` runs are in flight at the kill: the
      // worker-managers are frozen before they start, so none of them can finish its first step.
      for (const manager of stack.managers) manager.signal('SIGSTOP');
      const lateTxIds = await startOrders(stack, n, first);
      // Frozen first, so what it acknowledged can be read before it dies (what it wrote to its
      // socket still reaches Redis: read until two readings agree).
      stack.collector.signal('SIGSTOP');
      let before = -1;
      let ackedByDead = await acknowledged();
      while (ackedByDead !== before) {
        before = ackedByDead;
        await new Promise((r) => setTimeout(r, 100));
        ackedByDead = await acknowledged();
      }
      const counts = await stack.adapters.runs.countByState();
      const unfinishedAtKill = n - (counts.completed ?? 0) - (counts.compensated ?? 0);
      stack.collector.signal('SIGKILL');
      expect((await stack.collector.exited()).signal).toBe('SIGKILL');
      await stack.collector.start();
      for (const manager of stack.managers) manager.signal('SIGCONT');
      const txIds = [...(await starting), ...lateTxIds];
      expect(ackedByDead).toBeGreaterThan(0);
      expect(unfinishedAtKill).toBeGreaterThanOrEqual(late);
      await waitForTerminal(stack, txIds);
      // Nothing publishes events any more: the stream's totals are final.
      for (const service of stack.services.filter((s) => s !== stack.collector)) await service.stop();
      let added = 0;
      for (const stream of streams) {
        const info = (await raw.xinfo('STREAM', stream)) as unknown[];
        added += Number(info[info.indexOf('entries-added') + 1]);
      }
      const compensated = n / 10;
      let samples: MetricSample[] = [];
      await waitFor(
        async () => {
          samples = await samplesOf(stack.collector);
          return (
            sumSamples(samples, 'multiagents_collector_events_total') === added - ackedByDead &&
            sumSamples(samples, 'multiagents_bus_consumer_pending', {
              topic: 'events',
              group: 'metrics-collector',
            }) === 0 &&
            sumSamples(samples, 'multiagents_bus_consumer_lag', {
              topic: 'events',
              group: 'metrics-collector',
            }) === 0
          );
        },
        {
          timeoutMs: WAIT_MS,
          intervalMs: 200,
          description: 'the new collector handled what the dead one left',
        },
      ).catch(() => undefined);
      expect({
        handled: sumSamples(samples, 'multiagents_collector_events_total'),
        duplicates: sumSamples(samples, 'multiagents_collector_events_duplicate_total'),
        pending: sumSamples(samples, 'multiagents_bus_consumer_pending', {
          topic: 'events',
          group: 'metrics-collector',
        }),
        lag: sumSamples(samples, 'multiagents_bus_consumer_lag', {
          topic: 'events',
          group: 'metrics-collector',
        }),
      }).toEqual({ handled: added - ackedByDead, duplicates: 0, pending: 0, lag: 0 });
      // The counters restarted at 0 with the process; the gauge read from the store is exact.
      expect(sumSamples(samples, 'multiagents_runs', { state: RunState.Completed })).toBe(n - compensated);
      expect(sumSamples(samples, 'multiagents_runs', { state: RunState.Compensated })).toBe(compensated);
      // The new process counted only what the dead one had left: not the runs that one counted.
      expect(sumSamples(samples, 'multiagents_runs_finished_total')).toBeLessThanOrEqual(n - 20);
      expect(stack.collector.exits).toEqual([{ code: null, signal: 'SIGKILL' }]);
      expect(await stack.adapters.bus.listDeadLetters(Topics.events)).toEqual([]);
    } finally {
      raw.disconnect();
      await stack.stop();
    }
  }, 240_000);

  it('exits 78 listing every problem when its configuration is invalid', () => {
    const result = spawnSync(process.execPath, [join(REPO_ROOT, 'apps/metrics-collector/dist/main.js')], {
      env: { PATH: process.env['PATH'] ?? '', MULTIAGENTS_BACKEND: 'memory', HTTP_PORT: 'x' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.status).toBe(78);
    expect(result.stderr).toContain('HTTP_PORT=x: must be a port number');
    expect(result.stderr).toContain('a separate metrics-collector needs a shared backend');
  });
});
