/**
 * The worker-manager service: hosts the workers of MULTIAGENTS_WORKER_MODULES as one replica of the
 * `workers` consumer group on a shared backend (Redis or NATS). Replicas scale by starting more.
 * GRPC_PORT serves WorkerManagerService (ListWorkers, Drain), grpc.health.v1 (SERVING once the
 * command subscriptions run, NOT_SERVING while draining) and server reflection.
 * SIGTERM drains: no new commands; those in flight finish, or are handed back after the drain
 * timeout; then the process exits. A Drain call drains the same way but the process stays up
 * (ListWorkers answers, health NOT_SERVING, /readyz 503) until SIGTERM.
 */
import {
  DeferredMemoStore,
  describeStartupFailure,
  listenOrExplain,
  openBackendWhenReachable,
  startWhenBrokerAllows,
} from '@multiagents/backends';
import { ControlPlaneServer, deferredApi, type WorkerManagerApi } from '@multiagents/grpc-server';
import { createPinoLogger, createTracing, HealthServer, withoutCredentials } from '@multiagents/telemetry';
import { loadWorkerModules, WorkerManager } from '@multiagents/worker-sdk';
import { loadConfig } from './config';

/** Stops the process with every problem on its own line (exit 78 for configuration problems). */
function fail(err: unknown): never {
  const { text, exitCode } = describeStartupFailure('worker-manager', err);
  process.stderr.write(text);
  process.exit(exitCode);
}

async function main(): Promise<void> {
  let config;
  let workers;
  // Modules are loaded (and checked) before the broker is reachable; their memo is the backend's
  // once it opens, and no command is taken before then.
  const memo = new DeferredMemoStore('the worker-manager is starting: waiting for its broker');
  try {
    config = loadConfig();
    workers = loadWorkerModules(config.workerModules, { memo });
  } catch (err) {
    fail(err);
  }
  const logger = createPinoLogger({ level: config.logLevel, base: { service: 'worker-manager' } });
  // Off (no tracer, no observer, nothing on the hot path) unless an OTLP endpoint is configured.
  const tracing =
    config.tracing === undefined
      ? undefined
      : await createTracing(config.tracing, { messagingSystem: config.backend, logger });
  // Worker modules get the service's tracer from the OpenTelemetry API (`trace.getTracer`).
  tracing?.registerGlobally();
  const health = new HealthServer();
  if (config.httpPort !== undefined) {
    const httpPort = config.httpPort;
    await listenOrExplain(() => health.listen(httpPort, config.httpHost), httpPort, 'HTTP_PORT');
  }
  // The API listens first (health NOT_SERVING, calls UNAVAILABLE) while the backend opens: a
  // broker that is down delays readiness, with one log line per try, instead of crash-looping.
  const managerApi = deferredApi<WorkerManagerApi>('the worker-manager is starting: waiting for its broker');
  const grpc = new ControlPlaneServer({
    workerManager: managerApi.api,
    logger,
    host: config.grpcHost,
    port: config.grpcPort,
    reflection: config.security.reflection,
    ...(config.security.tls === undefined ? {} : { tls: config.security.tls }),
    ...(config.security.auth === undefined ? {} : { auth: config.security.auth }),
    onDrain: () => {
      health.setReady(false);
      logger.info({}, 'Drain call: no new commands; the process stays up until SIGTERM');
    },
  });
  const starting = new AbortController();
  let closeEngine: () => Promise<void> = async () => undefined;
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    starting.abort();
    logger.info({ signal }, 'draining');
    health.setReady(false);
    grpc.setServing(false);
    // The manager first (the API keeps answering ListWorkers while it drains; a Drain call in
    // flight shares the same drain), then the API, then the backend under both.
    void closeEngine()
      .then(() => grpc.close())
      .then(() => health.close())
      // The spans of the attempts just drained are exported before the process goes.
      .then(() => tracing?.shutdown())
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
  // Bound before the manager takes any command (a taken port stops the process with nothing in
  // flight), NOT_SERVING until the command subscriptions run.
  const { port: grpcPort } = await listenOrExplain(
    () => grpc.start({ serving: false }),
    config.grpcPort,
    'GRPC_PORT',
  );
  const backend = await openBackendWhenReachable(config, { logger, signal: starting.signal });
  if (backend === undefined) return;
  // Not ready while its broker is away (a replica that lost it leaves the rotation).
  health.setBrokerCheck(() => backend.connected());
  memo.bind(backend.memo);
  const newManager = (): WorkerManager =>
    new WorkerManager({
      bus: backend.bus,
      registry: backend.registry,
      workers,
      logger,
      ...(tracing === undefined ? {} : { observer: tracing.workerObserver() }),
      subscribe: {
        ...(config.visibilityTimeoutMs === undefined
          ? {}
          : { visibilityTimeoutMs: config.visibilityTimeoutMs }),
        ...(config.maxDeliveries === undefined ? {} : { maxDeliveries: config.maxDeliveries }),
      },
      ...(config.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: config.drainTimeoutMs }),
    });
  let manager: WorkerManager | undefined;
  closeEngine = async () => {
    await manager?.close();
    await backend.close();
  };
  health.setStats(() => ({ ...manager?.counters, ...backend.bus.counters?.() }));
  // A start the broker refuses (a subscription timing out while a cluster elects its leaders) is
  // tried again on a new manager: the failed one undid its subscriptions. A Drain call that came
  // first leaves the manager closed: it must not start taking commands.
  const started = await startWhenBrokerAllows(
    "subscribing to the workers' commands",
    async () => {
      if (grpc.draining || stopping) return;
      manager = newManager();
      managerApi.bind(manager);
      await manager.start();
    },
    { logger, signal: starting.signal },
  );
  if (!started || grpc.draining || stopping) return;
  grpc.setServing(true);
  health.setReady(true);
  logger.info(
    {
      backend: config.backend,
      managerId: manager?.managerId,
      tracing: config.tracing === undefined ? 'off' : withoutCredentials(config.tracing.tracesUrl),
      workers: workers.map((w) => w.name),
      grpcPort,
    },
    'worker-manager started',
  );
}

main().catch(fail);
