import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import {
  freePort,
  ServiceProcess,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { COMPOSE_FILE, environmentOf, loadCompose, ROOT } from './support/compose';
import { imageEnv } from './support/dockerfile';

/**
 * What the images hold, without a Docker engine: infra/deploy-apps.sh (the Dockerfile's own deploy
 * step) writes each app's folder, laid out as the Dockerfile's COPY lines lay out /app; the
 * services then run from there with the image's ENV plus the compose service's environment.
 */
const BUILD_MS = 8 * 60_000;
const APPS = ['orchestrator', 'worker-manager', 'metrics-collector'];
/** Never shipped to an image: build and test tooling. */
const DEV_ONLY = [
  'typescript@',
  'jest@',
  '@swc+core@',
  'eslint@',
  '@multiagents+testing@',
  '@multiagents+client@',
  'nx@',
];

describe('the image contents (infra/deploy-apps.sh), run as the containers would run them', () => {
  let out: string;
  let redis: ServerProcess;
  const services: ServiceProcess[] = [];
  let client: MultiAgentsClient | undefined;

  beforeAll(() => {
    const build = spawnSync(
      'bash',
      [
        join(ROOT, 'scripts', 'build-quiet.sh'),
        '@multiagents/orchestrator',
        '@multiagents/worker-manager',
        '@multiagents/metrics-collector',
        '@multiagents/example-order-processing',
      ],
      { cwd: ROOT, encoding: 'utf8' },
    );
    if (build.status !== 0) throw new Error(`build failed:\n${build.stderr}`);
    out = mkdtempSync(join(tmpdir(), 'multiagents-images-'));
    const deploy = spawnSync('bash', [join(ROOT, 'infra', 'deploy-apps.sh'), out], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    if (deploy.status !== 0) throw new Error(`infra/deploy-apps.sh failed:\n${deploy.stderr}`);
    // The COPY lines of the orchestrator and order-workers stages.
    mkdirSync(join(out, 'orchestrator', 'definitions'));
    cpSync(
      join(out, 'examples', 'order-processing', 'workflow.yaml'),
      join(out, 'orchestrator', 'definitions', 'order_processing.yaml'),
    );
    cpSync(
      join(out, 'examples', 'order-processing'),
      join(out, 'worker-manager', 'workers', 'order-processing'),
      {
        recursive: true,
      },
    );
  }, BUILD_MS);

  afterAll(async () => {
    client?.close();
    for (const service of services) await service.stop();
    await redis?.stop();
    if (out) rmSync(out, { recursive: true, force: true });
  }, 60_000);

  it.each(APPS)('%s: its dist, proto/ and production dependencies only', (app) => {
    const dir = join(out, app);
    expect(existsSync(join(dir, 'dist', 'main.js'))).toBe(true);
    expect(existsSync(join(dir, 'proto', 'multiagents', 'v1', 'orchestrator.proto'))).toBe(true);
    expect(existsSync(join(dir, 'src'))).toBe(false);
    const installed = readdirSync(join(dir, 'node_modules', '.pnpm'));
    expect(installed.filter((name) => DEV_ONLY.some((dev) => name.startsWith(dev)))).toEqual([]);
    expect(installed.some((name) => name.startsWith('@multiagents+core@'))).toBe(true);
  });

  it('the orchestrator and an order-workers replica start with their image and compose settings, and run an order', async () => {
    redis = await startRedisServer();
    const compose = loadCompose(COMPOSE_FILE);
    /** The container's environment, with /app standing for the app's folder and loopback ports. */
    const containerEnv = (service: string, target: string, app: string, httpPort: number) => {
      const env: Record<string, string> = {
        ...imageEnv(target),
        ...environmentOf(compose.services[service] ?? {}),
      };
      for (const [name, value] of Object.entries(env))
        env[name] = value.replace(/^\/app\//, `${join(out, app)}/`);
      // No Jaeger here: the host name `jaeger` only resolves inside compose.
      delete env['OTEL_EXPORTER_OTLP_ENDPOINT'];
      return {
        ...env,
        REDIS_URL: redis.url,
        GRPC_HOST: '127.0.0.1',
        HTTP_HOST: '127.0.0.1',
        HTTP_PORT: String(httpPort),
      };
    };
    const logs = join(out, 'logs');
    const grpcPort = await freePort();
    const orchestratorHttp = await freePort();
    const orchestrator = new ServiceProcess(
      'orchestrator',
      join(out, 'orchestrator', 'dist', 'main.js'),
      {
        ...containerEnv('orchestrator', 'orchestrator', 'orchestrator', orchestratorHttp),
        GRPC_PORT: String(grpcPort),
      },
      logs,
      orchestratorHttp,
    );
    services.push(orchestrator);
    await orchestrator.start(60_000);
    const managerHttp = await freePort();
    const manager = new ServiceProcess(
      'worker-manager',
      join(out, 'worker-manager', 'dist', 'main.js'),
      { ...containerEnv('worker-manager', 'order-workers', 'worker-manager', managerHttp), GRPC_PORT: '0' },
      logs,
      managerHttp,
    );
    services.push(manager);
    await manager.start(60_000);

    client = connect(`127.0.0.1:${grpcPort}`);
    const { txId } = await client.startWorkflow('order_processing', { orderId: 'img-1', total: 7 });
    const c = client;
    await waitFor(async () => (await c.getWorkflow(txId)).state === 'completed', {
      timeoutMs: 20_000,
      intervalMs: 100,
      description: 'the order completed',
    });

    // docker stop: SIGTERM, a drain, exit 0.
    manager.signal('SIGTERM');
    expect(await manager.exited(30_000)).toEqual({ code: 0, signal: null });
    orchestrator.signal('SIGTERM');
    expect(await orchestrator.exited(30_000)).toEqual({ code: 0, signal: null });
  }, 120_000);
});
