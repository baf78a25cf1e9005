/**
 * The orchestrator service. With MULTIAGENTS_BACKEND=memory (the default) it is the embedded mode:
 * orchestrator and worker-manager in one process, hosting the workers of MULTIAGENTS_WORKER_MODULES.
 * With redis or nats it is one of any number of orchestrators over the shared backend (compare-and-set
 * decides between them); workers run in worker-manager replicas, or here too when modules are named.
 * Definitions of MULTIAGENTS_DEFINITIONS are registered at start. The control plane
 * (OrchestratorService, WorkerManagerService, health, reflection) listens on GRPC_PORT.
 */
import { openBackend } from '@multiagents/backends';
import { Orchestrator } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import { ControlPlaneServer } from '@multiagents/grpc-server';
import { createPinoLogger, HealthServer } from '@multiagents/telemetry';
import { loadWorkerModules, WorkerManager } from '@multiagents/worker-sdk';
import { loadConfig, type OrchestratorConfig } from './config';
import { loadDefinitionFiles } from './load-definition-files';

async function main(): Promise<void> {
  let config: OrchestratorConfig;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(78); // EX_CONFIG
  }
  const logger = createPinoLogger({ level: config.logLevel, base: { service: 'orchestrator' } });
  const workers = loadWorkerModules(config.workerModules);
  const definitions = loadDefinitionFiles(config.definitionFiles);
  const health = new HealthServer();
  if (config.httpPort !== undefined) {
    const port = await health.listen(config.httpPort);
    logger.info({ port }, 'health endpoint listening');
  }

  let orchestrator: Orchestrator;
  let workerManager: WorkerManager | undefined;
  let closeEngine: () => Promise<void>;
  let busCounters: () => Readonly<Record<string, number>> = () => ({});
  if (config.backend === 'memory') {
    const stack = await startEmbedded({ workers, definitions, logger });
    orchestrator = stack.orchestrator;
    workerManager = stack.workerManager;
    closeEngine = () => stack.close();
  } else {
    // Waits (with backoff, inside the adapters) for the broker: a broker that is down at start
    // delays readiness instead of crash-looping.
    const backend = await openBackend(config, { logger, maintenance: true });
    busCounters = () => backend.bus.counters?.() ?? {};
    orchestrator = new Orchestrator({
      ...backend,
      logger,
      ...(config.visibilityTimeoutMs === undefined
        ? {}
        : { resultVisibilityTimeoutMs: config.visibilityTimeoutMs }),
    });
    for (const definition of definitions) await orchestrator.registerWorkflow(definition);
    if (workers.length > 0) {
      workerManager = new WorkerManager({ bus: backend.bus, workers, logger });
      await workerManager.start();
    }
    await orchestrator.start();
    closeEngine = async () => {
      await workerManager?.close();
      await orchestrator.close();
      await backend.close();
    };
  }
  const grpc = new ControlPlaneServer({
    orchestrator,
    ...(workerManager ? { workerManager } : {}),
    logger,
    host: config.grpcHost,
    port: config.grpcPort,
    maxMessageBytes: config.grpcMaxMessageBytes,
  });
  // Health turns SERVING here, after the backend is up.
  const { port: grpcPort } = await grpc.start();
  health.setStats(() => ({ ...orchestrator.stats, ...busCounters() }));
  health.setReady(true);
  logger.info(
    {
      backend: config.backend,
      workers: workers.map((w) => w.name),
      definitions: definitions.map((d) => `${d.id}@${d.version}`),
      grpcPort,
    },
    'orchestrator started',
  );
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    health.setReady(false);
    // The API first (NOT_SERVING, streams ended, calls finished), then the engine under it.
    void grpc
      .close()
      .then(() => closeEngine())
      .then(() => health.close())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`orchestrator failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
