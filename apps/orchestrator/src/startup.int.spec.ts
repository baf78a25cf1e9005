/**
 * Issue 11 item 3: start-up that keeps its promise. A broker that is down at start is waited for
 * (the service stays up, not ready, one log line per try naming the masked address) and the
 * service becomes ready when the broker comes; a bad configuration, an unreadable definition file,
 * a missing worker module or a port in use stop it with exit code 78 and every problem on its own
 * line, without a stack trace.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { connect } from '@multiagents/client';
import {
  freePort,
  ServiceProcess,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';

const REPO_ROOT = join(__dirname, '..', '..', '..');
const ORCHESTRATOR = join(REPO_ROOT, 'apps/orchestrator/dist/main.js');
const WORKER_MANAGER = join(REPO_ROOT, 'apps/worker-manager/dist/main.js');
const METRICS_COLLECTOR = join(REPO_ROOT, 'apps/metrics-collector/dist/main.js');
const WORKFLOW = join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml');
const WORKERS = join(REPO_ROOT, 'examples/order-processing/dist/service-workers.js');
const LOGS = join(REPO_ROOT, 'tmp', 'startup-logs');

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

/** Runs a service to its exit (bounded) and returns its exit code and output. */
function runToExit(
  script: string,
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], {
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`did not exit within 20 s:\n${output}`));
    }, 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A call to the service's gRPC API fails with UNAVAILABLE saying it waits for its broker. */
async function expectUnavailable(name: string, grpcPort: number): Promise<void> {
  const client = connect(`127.0.0.1:${grpcPort}`, { retry: { maxAttempts: 1 } });
  try {
    const call = name === 'orchestrator' ? client.listWorkflowDefinitions() : client.listWorkers();
    await expect(call).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('waiting for its broker'),
    });
  } finally {
    client.close();
  }
}

async function readyz(port: number): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
  } catch {
    return 0;
  }
}

describe.each([
  ['orchestrator', ORCHESTRATOR, { MULTIAGENTS_DEFINITIONS: WORKFLOW }, 'GRPC_PORT'],
  ['worker-manager', WORKER_MANAGER, { MULTIAGENTS_WORKER_MODULES: WORKERS }, 'GRPC_PORT'],
  // No gRPC API: its one port is HTTP (health and /metrics).
  ['metrics-collector', METRICS_COLLECTOR, {}, 'HTTP_PORT'],
] as const)('%s start-up', (name, script, extra, portVariable) => {
  let redis: ServerProcess | undefined;
  let broker: ServerProcess | undefined;
  let service: ServiceProcess | undefined;

  afterEach(async () => {
    await service?.stop();
    await redis?.stop();
    await broker?.stop();
    service = undefined;
    redis = undefined;
    broker = undefined;
  });

  it.each([
    ['Redis', 'redis'],
    ['NATS', 'nats'],
  ] as const)(
    'waits for a %s that is down, not ready, logging the masked address, and gets ready when it comes',
    async (_, backend) => {
      const brokerPort = await freePort();
      const httpPort = await freePort();
      const grpcPort = await freePort();
      const logDir = join(LOGS, `${name}-${backend}-broker-down-${Date.now()}`);
      const brokerEnv: Record<string, string> =
        backend === 'redis'
          ? { REDIS_URL: `redis://:s3cret-password@127.0.0.1:${brokerPort}` }
          : { NATS_URL: `nats://app:s3cret-password@127.0.0.1:${brokerPort}` };
      service = new ServiceProcess(
        `${name}-broker-down`,
        script,
        {
          ...extra,
          ...brokerEnv,
          MULTIAGENTS_BACKEND: backend,
          MULTIAGENTS_PREFIX: `startup-${name}`,
          LOG_LEVEL: 'info',
          GRPC_PORT: String(grpcPort),
        },
        logDir,
        httpPort,
      );
      const started = service.start(60_000);
      // Up, answering health, not ready, and saying why once per try.
      await waitFor(async () => (await readyz(httpPort)) === 503, { timeoutMs: 15_000 });
      const { readFileSync } = await import('node:fs');
      const log = (): string => readFileSync(join(logDir, `${name}-broker-down.log`), 'utf8');
      await waitFor(() => (log().match(/broker not reachable yet/g) ?? []).length >= 2, {
        timeoutMs: 15_000,
      });
      expect(log()).toContain(`${backend}://${backend === 'nats' ? 'app' : ''}:***@127.0.0.1:${brokerPort}`);
      expect(log()).not.toContain('s3cret-password');
      expect(await readyz(httpPort)).toBe(503);
      // The API listens meanwhile and says why it cannot answer yet.
      if (portVariable === 'GRPC_PORT') await expectUnavailable(name, grpcPort);
      // The broker comes: ready without a restart.
      broker =
        backend === 'redis'
          ? await startRedisServer({ port: brokerPort, password: 's3cret-password' })
          : await startNatsServer({ port: brokerPort, user: 'app', password: 's3cret-password' });
      await started;
      expect(await readyz(httpPort)).toBe(200);
      expect(log()).toContain('broker reachable');
    },
    90_000,
  );

  it('exits 78 listing every configuration problem, without a stack trace', async () => {
    const { code, output } = await runToExit(script, {
      ...extra,
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: 'not a url',
      [portVariable]: 'x',
      LOG_LEVEL: 'loud',
    });
    expect(code).toBe(78);
    expect(output).toContain('REDIS_URL=not a url');
    expect(output).toContain(`${portVariable}=x`);
    expect(output).toContain('LOG_LEVEL=loud');
    expect(output).not.toMatch(/\n\s+at /);
  }, 30_000);

  it('exits 78 naming the port and its variable when the port is taken', async () => {
    redis = await startRedisServer();
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const { code, output } = await runToExit(script, {
        ...extra,
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: redis.url,
        MULTIAGENTS_PREFIX: `port-${name}`,
        [portVariable]: String(port),
      });
      expect(code).toBe(78);
      expect(output).toContain(`${portVariable}=${port}`);
      expect(output).not.toMatch(/\n\s+at /);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  }, 30_000);
});

describe('orchestrator start-up: files and modules', () => {
  it('exits 78 for an invalid definition file and a missing worker module, each problem listed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'startup-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'id: bad\nversion: 0\nsteps: []\n');
    const { code, output } = await runToExit(ORCHESTRATOR, {
      MULTIAGENTS_DEFINITIONS: `${bad},${join(dir, 'missing.yaml')}`,
      MULTIAGENTS_WORKER_MODULES: join(dir, 'no-such-module.js'),
      GRPC_PORT: '0',
    });
    expect(code).toBe(78);
    expect(output).toContain('no-such-module.js: cannot load');
    expect(output).toContain(`${bad}: definition: version must be an integer >= 1, got 0`);
    expect(output).toContain(`${join(dir, 'missing.yaml')}: cannot read: ENOENT`);
    expect(output).not.toMatch(/\n\s+at /);
  }, 30_000);
});
