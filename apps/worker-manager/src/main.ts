/**
 * The worker-manager service: hosts the workers of MULTIAGENTS_WORKER_MODULES as one replica of the
 * `workers` consumer group on a shared backend (Redis or NATS). Replicas scale by starting more.
 * GRPC_PORT serves WorkerManagerService (ListWorkers, Drain), grpc.health.v1 (SERVING once the
 * command subscriptions run, NOT_SERVING while draining) and server reflection.
 * SIGTERM drains: no new commands; those in flight finish, or are handed back after the drain
 * timeout; then the process exits. A Drain call drains the same way but the process stays up
 * (ListWorkers answers, health NOT_SERVING, /readyz 503) until SIGTERM.
 */
import { openBackend } from '@multiagents/backends';
import { ControlPlaneServer } from '@multiagents/grpc-server';
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
  const grpc = new ControlPlaneServer({
    workerManager: manager,
    logger,
    host: config.grpcHost,
    port: config.grpcPort,
    onDrain: () => {
      health.setReady(false);
      logger.info({}, 'Drain call: no new commands; the process stays up until SIGTERM');
    },
  });
  // Bound before the manager takes any command (a taken port stops the process with nothing in
  // flight), NOT_SERVING until the command subscriptions run.
  const { port: grpcPort } = await grpc.start({ serving: false });
  // A Drain call that came first leaves the manager closed: it must not start taking commands.
  if (!grpc.draining) await manager.start();
  health.setStats(() => ({ ...manager.counters, ...backend.bus.counters?.() }));
  if (!grpc.draining) {
    grpc.setServing(true);
    health.setReady(true);
  }
  logger.info(
    {
      backend: config.backend,
      managerId: manager.managerId,
      workers: workers.map((w) => w.name),
      grpcPort,
    },
    'worker-manager started',
  );
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    health.setReady(false);
    grpc.setServing(false);
    // The manager first (the API keeps answering ListWorkers while it drains; a Drain call in
    // flight shares the same drain), then the API, then the backend under both.
    void manager
      .close()
      .then(() => grpc.close())
      .then(() => backend.close())
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
}

main().catch((err: unknown) => {
  process.stderr.write(`worker-manager failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
