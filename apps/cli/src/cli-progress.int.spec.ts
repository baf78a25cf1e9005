/**
 * `multiagents watch --progress` as a user runs it: the CLI as a child process, against an
 * orchestrator, a worker-manager hosting a worker that streams its answer (progress deltas) and an
 * event-monitor, each its own process over a private redis-server, all run from their TypeScript
 * sources (test/register-ts.cjs). The deltas reach the watcher through the monitor's live stream,
 * in order, while the run's changes come from the orchestrator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { RunState } from '@multiagents/contracts';
import {
  freePort,
  ServiceProcess,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { STREAMED_ANSWER, STREAMED_PIECES } from './test/streaming-workers';

jest.setTimeout(120_000);

const ROOT = resolve(__dirname, '..', '..', '..');
const NODE_ARGS = ['--conditions=development', '-r', join(__dirname, 'test', 'register-ts.cjs')];
const WAIT_MS = 60_000;

/** The text a `--progress` watch printed as deltas of `field`, joined in the order printed. */
function streamedText(stdout: string, step: string, field: string): string {
  const prefix = `  ${step} ${field} +"`;
  return stdout
    .split('\n')
    .filter((line) => line.startsWith(prefix) && line.endsWith('"'))
    .map((line) => JSON.parse(`"${line.slice(prefix.length, -1)}"`) as string)
    .join('');
}

describe('multiagents watch --progress (child processes: orchestrator, worker-manager, event-monitor, redis)', () => {
  let broker: ServerProcess;
  let services: ServiceProcess[] = [];
  let client: MultiAgentsClient;
  let env: Record<string, string>;
  let watcher: ChildProcess | undefined;

  beforeAll(async () => {
    broker = await startRedisServer();
    const common = {
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: broker.url,
      MULTIAGENTS_PREFIX: `cli-progress-${process.pid}`,
      LOG_LEVEL: 'warn',
    };
    const logDir = join(ROOT, 'tmp', 'cli-progress', String(process.pid));
    const orchestratorPort = await freePort();
    const monitorPort = await freePort();
    services = [
      new ServiceProcess(
        'orchestrator',
        join(ROOT, 'apps/orchestrator/src/main.ts'),
        { ...common, GRPC_PORT: String(orchestratorPort) },
        logDir,
        await freePort(),
      ),
      new ServiceProcess(
        'worker-manager',
        join(ROOT, 'apps/worker-manager/src/main.ts'),
        { ...common, MULTIAGENTS_WORKER_MODULES: join(__dirname, 'test', 'streaming-workers.ts') },
        logDir,
        await freePort(),
      ),
      new ServiceProcess(
        'event-monitor',
        join(ROOT, 'apps/event-monitor/src/main.ts'),
        { ...common, GRPC_PORT: String(monitorPort) },
        logDir,
        await freePort(),
      ),
    ];
    await Promise.all(services.map((s) => s.start(WAIT_MS, { nodeArgs: NODE_ARGS })));
    client = connect(`127.0.0.1:${orchestratorPort}`);
    await client.registerWorkflow(STREAMED_ANSWER);
    env = {
      MULTIAGENTS_ADDRESS: `127.0.0.1:${orchestratorPort}`,
      MULTIAGENTS_MONITOR_ADDRESS: `127.0.0.1:${monitorPort}`,
    };
  }, 180_000);

  afterAll(async () => {
    watcher?.kill('SIGKILL');
    client?.close();
    await Promise.all(services.map((s) => s.stop()));
    await broker?.stop();
  }, 60_000);

  it("prints a step's streamed deltas in order while the run is live, then the run's end", async () => {
    const { txId } = await client.startWorkflow(STREAMED_ANSWER.id, {});
    let stdout = '';
    let stderr = '';
    const child = spawn(
      process.execPath,
      [...NODE_ARGS, join(__dirname, 'main.ts'), 'watch', txId, '--progress'],
      {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    watcher = child;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolveExit) => child.once('exit', resolveExit));
    // The watch opens the monitor's stream before it reads the run: once the run's first line is
    // out, every delta from then on reaches it.
    await waitFor(() => stdout.includes('go'), {
      timeoutMs: WAIT_MS,
      description: `the watch showing the run waiting\n${stdout}\n${stderr}`,
    });
    await client.signalWorkflow(txId, 'go');
    await waitFor(() => streamedText(stdout, 'draft', 'answer') === STREAMED_PIECES.join(''), {
      timeoutMs: WAIT_MS,
      description: `the streamed answer printed\n${stdout}\n${stderr}`,
    });
    await waitFor(() => stdout.includes('  draft status {"phase":"written"}'), {
      timeoutMs: WAIT_MS,
      description: `the status printed\n${stdout}`,
    });
    await client.signalWorkflow(txId, 'done');
    expect(await exited).toBe(0);
    expect(stdout).toMatch(new RegExp(`run ${txId} ended completed`));
    expect(stderr).toBe('');
    expect((await client.getWorkflow(txId)).state).toBe(RunState.Completed);
  });
});
