/**
 * The orchestrator service. With MULTIAGENTS_BACKEND=memory (the default) it is the embedded mode:
 * orchestrator and worker-manager in one process, hosting the workers of MULTIAGENTS_WORKER_MODULES.
 * With redis or nats it is one of any number of orchestrators over the shared backend (compare-and-set
 * decides between them); workers run in worker-manager replicas, or here too when modules are named.
 * Definitions of MULTIAGENTS_DEFINITIONS are registered at start. The control plane
 * (OrchestratorService, WorkerManagerService, health, reflection) listens on GRPC_PORT.
 */
import {
  DeferredMemoStore,
  describeStartupFailure,
  listenOrExplain,
  openBackendWhenReachable,
  startWhenBrokerAllows,
} from '@multiagents/backends';
import { Orchestrator } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import {
  ControlPlaneServer,
  deferredApi,
  type OrchestratorApi,
  type WorkerManagerApi,
} from '@multiagents/grpc-server';
import { createPinoLogger, createTracing, HealthServer, withoutCredentials } from '@multiagents/telemetry';
import { loadWorkerModules, WorkerManager } from '@multiagents/worker-sdk';
import { loadConfig } from './config';
import { ValidationErrorList } from './config-support';
import { loadDefinitionFiles } from './load-definition-files';
import { localDispatchOptions } from './local-dispatch';

/** Stops the process with every problem on its own line (exit 78 for configuration problems). */
function fail(err: unknown): never {
  const { text, exitCode } = describeStartupFailure('orchestrator', err);
  process.stderr.write(text);
  process.exit(exitCode);
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    fail(err);
  }
  // Worker modules and definition files are checked together: every problem in one report.
  const problems = new ValidationErrorList();
  // Modules are loaded (and checked) before the broker is reachable; their memo is the backend's
  // once it opens.
  const memo = new DeferredMemoStore('the orchestrator is starting: waiting for its broker');
  const workers = problems.collect(() => loadWorkerModules(config.workerModules, { memo })) ?? [];
  const definitions = problems.collect(() => loadDefinitionFiles(config.definitionFiles)) ?? [];
  try {
    problems.throwIfAny('cannot start');
  } catch (err) {
    fail(err);
  }
  const logger = createPinoLogger({ level: config.logLevel, base: { service: 'orchestrator' } });
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
    const port = await listenOrExplain(() => health.listen(httpPort, config.httpHost), httpPort, 'HTTP_PORT');
    logger.info({ port }, 'health endpoint listening');
  }
  // Stops a start-up that is still waiting for its broker.
  const starting = new AbortController();
  let stopping = false;
  let closeAll: () => Promise<void> = async () => undefined;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    starting.abort();
    logger.info({ signal }, 'draining');
    health.setReady(false);
    void closeAll()
      .then(() => health.close())
      // The spans of the work just drained are exported before the process goes.
      .then(() => tracing?.shutdown())
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'shutdown was not clean'))
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  // The API listens first (health NOT_SERVING, calls UNAVAILABLE) while the engine starts: a
  // broker that is down delays readiness, with one log line per try, instead of crash-looping.
  const embedded = config.backend === 'memory';
  const whileStarting = 'the orchestrator is starting: waiting for its broker';
  const orchestratorApi = deferredApi<OrchestratorApi>(whileStarting);
  const workerManagerApi =
    embedded || workers.length > 0 ? deferredApi<WorkerManagerApi>(whileStarting) : undefined;
  const grpc = new ControlPlaneServer({
    orchestrator: orchestratorApi.api,
    ...(workerManagerApi ? { workerManager: workerManagerApi.api } : {}),
    logger,
    host: config.grpcHost,
    port: config.grpcPort,
    reflection: config.security.reflection,
    ...(config.security.tls === undefined ? {} : { tls: config.security.tls }),
    ...(config.security.auth === undefined ? {} : { auth: config.security.auth }),
    maxMessageBytes: config.grpcMaxMessageBytes,
  });
  let closeEngine: () => Promise<void> = async () => undefined;
  closeAll = async () => {
    // The API first (NOT_SERVING, streams ended, calls finished), then the engine under it.
    await grpc.close();
    await closeEngine();
  };
  const { port: grpcPort } = await listenOrExplain(
    () => grpc.start({ serving: false }),
    config.grpcPort,
    'GRPC_PORT',
  );

  let orchestrator: Orchestrator;
  let workerManager: WorkerManager | undefined;
  if (embedded) {
    const stack = await startEmbedded({
      workers,
      definitions,
      logger,
      eagerDispatch: config.eagerDispatch,
      ...(tracing === undefined
        ? {}
        : {
            orchestrator: { observer: tracing.orchestratorObserver() },
            workerManager: { observer: tracing.workerObserver() },
          }),
    });
    memo.bind(stack.memo);
    orchestrator = stack.orchestrator;
    workerManager = stack.workerManager;
    closeEngine = () => stack.close();
    health.setStats(() => ({ ...orchestrator.stats }));
  } else {
    const backend = await openBackendWhenReachable(config, {
      logger,
      maintenance: true,
      signal: starting.signal,
    });
    if (backend === undefined) return;
    // Not ready while its broker is away (a replica that lost it leaves the rotation).
    health.setBrokerCheck(() => backend.connected());
    memo.bind(backend.memo);
    const newEngine = (): { orchestrator: Orchestrator; workerManager: WorkerManager | undefined } => {
      const workerManager =
        workers.length === 0
          ? undefined
          : new WorkerManager({
              bus: backend.bus,
              workers,
              logger,
              registry: backend.registry,
              ...(tracing === undefined ? {} : { observer: tracing.workerObserver() }),
            });
      const orchestrator = new Orchestrator({
        bus: backend.bus,
        runs: backend.runs,
        definitions: backend.definitions,
        registry: backend.registry,
        ...localDispatchOptions(
          config.eagerDispatch ? workerManager : undefined,
          backend.orchestrator,
          config.redispatchAfterMs,
        ),
        logger,
        ...(tracing === undefined ? {} : { observer: tracing.orchestratorObserver() }),
        ...(config.visibilityTimeoutMs === undefined
          ? {}
          : { resultVisibilityTimeoutMs: config.visibilityTimeoutMs }),
      });
      return { orchestrator, workerManager };
    };
    let engine = newEngine();
    const closeParts = async (): Promise<void> => {
      await engine.workerManager?.close();
      await engine.orchestrator.close();
    };
    closeEngine = async () => {
      await closeParts();
      await backend.close();
    };
    health.setStats(() => ({ ...engine.orchestrator.stats, ...backend.bus.counters?.() }));
    // A start the broker refuses (a subscription timing out while a cluster elects its leaders)
    // is tried again on a new engine, after the failed one has undone its subscriptions.
    let tries = 0;
    const started = await startWhenBrokerAllows(
      'registering the definitions and subscribing',
      async () => {
        if (tries++ > 0) {
          await closeParts();
          engine = newEngine();
        }
        for (const definition of definitions) await engine.orchestrator.registerWorkflow(definition);
        await engine.workerManager?.start();
        await engine.orchestrator.start();
      },
      { logger, signal: starting.signal },
    );
    if (!started) return;
    orchestrator = engine.orchestrator;
    workerManager = engine.workerManager;
  }
  orchestratorApi.bind(orchestrator);
  if (workerManager) workerManagerApi?.bind(workerManager);
  if (stopping) return;
  grpc.setServing(true);
  health.setReady(true);
  logger.info(
    {
      backend: config.backend,
      tracing: config.tracing === undefined ? 'off' : withoutCredentials(config.tracing.tracesUrl),
      workers: workers.map((w) => w.name),
      definitions: definitions.map((d) => `${d.id}@${d.version}`),
      grpcPort,
    },
    'orchestrator started',
  );
}

main().catch(fail);
