/**
 * The worker-manager service: hosts the workers of MULTIAGENTS_WORKER_MODULES as one replica of the
 * `workers` consumer group on a shared backend (Redis or NATS). Replicas scale by starting more.
 * SIGTERM drains: no new commands; those in flight finish, or are handed back after the drain timeout.
 */
import { openBackend } from '@multiagents/backends';
import { createPinoLogger, HealthServer } from '@multiagents/telemetry';
import { loadWorkerModules, WorkerManager } from '@multiagents/worker-sdk';
import { loadConfig, type WorkerManagerConfig } from './config';

async function main(): Promise<void> {
  let config: WorkerManagerConfig;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(78); // EX_CONFIG
  }
  const logger = createPinoLogger({ level: config.logLevel, base: { service: 'worker-manager' } });
  const workers = loadWorkerModules(config.workerModules);
  const health = new HealthServer();
  if (config.httpPort !== undefined) await health.listen(config.httpPort);
  const backend = await openBackend(config, { logger });
  const manager = new WorkerManager({
    bus: backend.bus,
    workers,
    logger,
    subscribe: {
      ...(config.visibilityTimeoutMs === undefined
        ? {}
        : { visibilityTimeoutMs: config.visibilityTimeoutMs }),
      ...(config.maxDeliveries === undefined ? {} : { maxDeliveries: config.maxDeliveries }),
    },
    ...(config.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: config.drainTimeoutMs }),
  });
  await manager.start();
  health.setStats(() => ({ ...manager.counters, ...backend.bus.counters?.() }));
  health.setReady(true);
  logger.info(
    { backend: config.backend, managerId: manager.managerId, workers: workers.map((w) => w.name) },
    'worker-manager started',
  );
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    health.setReady(false);
    void manager
      .close()
      .then(() => backend.close())
      .then(() => health.close())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`worker-manager failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
