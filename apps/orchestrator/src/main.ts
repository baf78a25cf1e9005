/**
 * The orchestrator service. With MULTIAGENTS_BACKEND=memory (the default) it is the embedded mode:
 * orchestrator and worker-manager in one process, hosting the workers named by
 * MULTIAGENTS_WORKER_MODULES and registering MULTIAGENTS_DEFINITIONS at start.
 */
import { startEmbedded } from '@multiagents/embedded';
import { createPinoLogger } from '@multiagents/telemetry';
import { loadConfig } from './config';
import { HealthServer } from './health-server';
import { loadWorkerModules } from '@multiagents/worker-sdk';
import { loadDefinitionFiles } from './load-definition-files';

async function main(): Promise<void> {
  let config;
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
  const stack = await startEmbedded({ workers, definitions, logger });
  if (config.httpPort !== undefined) {
    const port = await health.listen(config.httpPort);
    logger.info({ port }, 'health endpoint listening');
  }
  health.setReady(true);
  logger.info(
    {
      backend: config.backend,
      workers: workers.map((w) => w.name),
      definitions: definitions.map((d) => `${d.id}@${d.version}`),
    },
    'orchestrator started',
  );
  const shutdown = (signal: string): void => {
    logger.info({ signal }, 'draining');
    health.setReady(false);
    void stack
      .close()
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
