/**
 * The metrics-collector service: one replica of the `metrics-collector` consumer group on the
 * lifecycle events (replicas compete for them; each keeps its own counters and Prometheus sums
 * the replicas), serving Prometheus `/metrics` on HTTP_PORT with /healthz, /readyz and /stats.
 * Gauges of the backend (runs per state, consumer lag, dead letters, live workers) are read at
 * scrape time. SIGTERM drains: no new events, those in flight acknowledged, then exit.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  describeStartupFailure,
  listenOrExplain,
  openBackendWhenReachable,
  startWhenBrokerAllows,
} from '@multiagents/backends';
import { MetricsCollector } from '@multiagents/metrics';
import { createPinoLogger, HealthServer } from '@multiagents/telemetry';
import { loadConfig, type MetricsCollectorConfig } from './config';

function packageVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as {
      version?: unknown;
    };
    return typeof manifest.version === 'string' ? manifest.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Stops the process with every problem on its own line (exit 78 for configuration problems). */
function fail(err: unknown): never {
  const { text, exitCode } = describeStartupFailure('metrics-collector', err);
  process.stderr.write(text);
  process.exit(exitCode);
}

async function main(): Promise<void> {
  let config: MetricsCollectorConfig;
  try {
    config = loadConfig();
  } catch (err) {
    fail(err);
  }
  const logger = createPinoLogger({ level: config.logLevel, base: { service: 'metrics-collector' } });
  const health = new HealthServer();
  // Up (not ready) before the broker is: a broker that is down delays readiness, not the probes.
  const httpPort = config.httpPort;
  const port = await listenOrExplain(() => health.listen(httpPort, config.httpHost), httpPort, 'HTTP_PORT');
  logger.info({ port }, 'metrics endpoint listening');
  let stopping = false;
  let closeEngine: () => Promise<void> = async () => undefined;
  const starting = new AbortController();
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    starting.abort();
    logger.info({ signal }, 'draining');
    health.setReady(false);
    void closeEngine()
      .then(() => health.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  // A broker that is down at start delays readiness, with one log line per try.
  const backend = await openBackendWhenReachable(config, { logger, signal: starting.signal });
  if (backend === undefined) return;
  // Not ready while its broker is away (a replica that lost it leaves the rotation).
  health.setBrokerCheck(() => backend.connected());
  const newCollector = (): MetricsCollector =>
    new MetricsCollector({
      bus: backend.bus,
      runs: backend.runs,
      definitions: backend.definitions,
      registry: backend.registry,
      consumer: `metrics-collector-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
      buildInfo: { version: packageVersion(), backend: config.backend },
      logger,
      subscribe: {
        ...(config.visibilityTimeoutMs === undefined
          ? {}
          : { visibilityTimeoutMs: config.visibilityTimeoutMs }),
        ...(config.maxDeliveries === undefined ? {} : { maxDeliveries: config.maxDeliveries }),
      },
      bounds: {
        ...(config.maxWorkflows === undefined ? {} : { maxWorkflows: config.maxWorkflows }),
        ...(config.maxStepsPerWorkflow === undefined
          ? {}
          : { maxStepsPerWorkflow: config.maxStepsPerWorkflow }),
        ...(config.maxWorkers === undefined ? {} : { maxWorkers: config.maxWorkers }),
      },
    });
  let collector = newCollector();
  health.setRoute('/metrics', async (request) => {
    const { contentType, body } = await collector.scrape(request.headers.accept);
    return { status: 200, contentType, body };
  });
  health.setStats(() => ({ ...collector.stats }));
  closeEngine = async () => {
    await collector.close();
    await backend.close();
  };
  // A start the broker refuses (a subscription timing out while a cluster elects its leaders) is
  // tried again on a new collector, after the failed one has undone its part.
  let tries = 0;
  const started = await startWhenBrokerAllows(
    'subscribing to the lifecycle events',
    async () => {
      if (tries++ > 0) {
        await collector.close();
        collector = newCollector();
      }
      await collector.start();
    },
    { logger, signal: starting.signal },
  );
  if (!started || stopping) return;
  health.setReady(true);
  logger.info({ backend: config.backend, port }, 'metrics-collector started');
}

main().catch(fail);
