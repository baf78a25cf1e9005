import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { freePort, startPrometheusServer, waitFor, type PrometheusServer } from '@multiagents/testing';
import { COMPOSE_FILE, environmentOf, loadCompose, readRepoFile, ROOT } from './support/compose';
import { dashboardQueries, runnableQuery, type GrafanaDashboard } from './support/dashboard';
import { alive, StackProcess } from './support/stack-process';

/** The first start builds the apps (minutes on a cold cache, two cores shared). */
const BUILD_AND_START_MS = 9 * 60_000;
const TERMINAL = ['completed', 'failed', 'compensated', 'compensation_failed', 'cancelled'];

function run(
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('pnpm stack', () => {
  let stack: StackProcess;
  let grpcPort: number;
  let metricsPort: number;
  let client: MultiAgentsClient;
  let prometheus: PrometheusServer | undefined;
  let dataDir: string;

  beforeAll(async () => {
    grpcPort = await freePort();
    metricsPort = await freePort();
    stack = new StackProcess(
      [
        '--workers',
        '2',
        '--grpc-port',
        String(grpcPort),
        '--metrics-port',
        String(metricsPort),
        '--monitor-port',
        String(await freePort()),
        '--monitor-grpc-port',
        String(await freePort()),
      ],
      // Commands a killed replica held go to the other one quickly.
      { MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '2000', LOG_LEVEL: 'warn' },
    );
    await stack.waitForLine(/MultiAgents stack ready/, BUILD_AND_START_MS);
    // The last line of the summary: every address is printed by then.
    await stack.waitForLine(/Ctrl-C stops everything/, 5_000);
    dataDir = (await stack.waitForLine(/data in (\S+?)[,)]/, 1000))[1] as string;
    client = connect(`127.0.0.1:${grpcPort}`);
  }, BUILD_AND_START_MS + 30_000);

  afterAll(async () => {
    client?.close();
    await prometheus?.stop();
    if (stack?.running) {
      stack.signal('SIGINT');
      const stopped = await Promise.race([
        stack.exited,
        new Promise((r) => setTimeout(r, 60_000, 'timeout')),
      ]);
      if (stopped === 'timeout') {
        for (const pid of stack.pids().values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
        stack.signal('SIGKILL');
      }
    }
  }, 90_000);

  it('prints the gRPC, metrics and broker addresses and the CLI command to try', () => {
    const output = stack.lines.join('\n');
    expect(output).toContain(`orchestrator gRPC    127.0.0.1:${grpcPort}`);
    expect(output).toContain(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(output).toMatch(/redis\s+redis:\/\/127\.0\.0\.1:\d+/);
    expect(output).toContain(
      `MULTIAGENTS_ADDRESS=127.0.0.1:${grpcPort} pnpm multiagents start order_processing --input`,
    );
    // One terminal: every process's lines prefixed with its name.
    for (const name of ['redis', 'orchestrator', 'worker-manager-1']) {
      expect(stack.lines.some((line) => line.startsWith(`${name} `) && line.includes(' | '))).toBe(true);
    }
    expect([...stack.pids().keys()]).toEqual(
      expect.arrayContaining(['orchestrator', 'worker-manager-1', 'worker-manager-2', 'metrics-collector']),
    );
  });

  it('runs an order through the CLI', async () => {
    const result = await run(
      [
        join(ROOT, 'apps', 'cli', 'dist', 'main.js'),
        '--json',
        'start',
        'order_processing',
        '--input',
        '{"orderId":"cli-1","total":42}',
        '--watch',
      ],
      { MULTIAGENTS_ADDRESS: `127.0.0.1:${grpcPort}` },
    );
    expect(result.stderr).toBe('');
    const last = JSON.parse(result.stdout.trim().split('\n').pop() as string) as {
      state: string;
      context: Record<string, unknown>;
    };
    expect(last.state).toBe('completed');
    expect(last.context).toMatchObject({ orderId: 'cli-1', trackingId: 'trk-cli-1' });
  }, 30_000);

  it('runs still finish when one worker-manager is killed', async () => {
    const victim = stack.pids().get('worker-manager-1') as number;
    const starts = Array.from({ length: 20 }, (_, i) =>
      client.startWorkflow('order_processing', { orderId: `kill-${i}`, total: 10 + i }),
    );
    process.kill(victim, 'SIGKILL');
    const txIds = (await Promise.all(starts)).map((s) => s.txId);
    await stack.waitForLine(new RegExp(`worker-manager-1 \\(pid ${victim}\\) exited with SIGKILL`), 5_000);
    const states = new Map<string, string>();
    await waitFor(
      async () => {
        for (const txId of txIds) states.set(txId, (await client.getWorkflow(txId)).state);
        return [...states.values()].every((state) => TERMINAL.includes(state));
      },
      { timeoutMs: 30_000, intervalMs: 200, description: 'every run terminal after the kill' },
    );
    expect([...states.values()]).toEqual(txIds.map(() => 'completed'));
    expect(alive(stack.pids().get('worker-manager-2') as number)).toBe(true);
  }, 45_000);

  it('serves /metrics to a real Prometheus, where every Grafana query runs', async () => {
    prometheus = await startPrometheusServer({ targets: [`127.0.0.1:${metricsPort}`] });
    const server = prometheus;
    await waitFor(
      async () => ((await server.queryValue('sum(multiagents_runs_finished_total)')) ?? 0) >= 21,
      {
        timeoutMs: 20_000,
        description: 'the runs counted by Prometheus',
      },
    );
    const dashboard = JSON.parse(
      readRepoFile('infra/grafana/dashboards/multiagents.json'),
    ) as GrafanaDashboard;
    for (const query of dashboardQueries(dashboard)) {
      if (query.startsWith('label_values(')) continue; // Grafana's own function, not PromQL
      await expect(server.query(runnableQuery(query))).resolves.toBeDefined();
    }
    const byOutcome = await server.query('sum by (outcome) (multiagents_runs_finished_total)');
    expect(byOutcome).toEqual([{ metric: { outcome: 'completed' }, value: 21 }]);
    expect(await server.queryValue('max(multiagents_worker_managers)')).toBeGreaterThanOrEqual(1);
  }, 40_000);

  it('Ctrl-C drains and stops everything, the broker too, and removes its folder', async () => {
    const pids = [...stack.pids().values()];
    expect(pids.length).toBeGreaterThanOrEqual(4);
    client.close();
    stack.signal('SIGINT');
    expect(await stack.exited).toEqual({ code: 0, signal: null });
    expect(stack.lines.join('\n')).toContain('stopped; nothing left running');
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(dataDir)).toBe(false);
  }, 70_000);
});

describe('pnpm stack refusing to start', () => {
  let blocker: Server;
  let port: number;

  beforeAll(async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    port = (blocker.address() as { port: number }).port;
  });
  afterAll(() => new Promise((resolve) => blocker.close(resolve)));

  it('names a port already in use, exits non-zero, and starts nothing', async () => {
    const stack = new StackProcess([
      '--no-build',
      '--grpc-port',
      String(port),
      '--metrics-port',
      String(await freePort()),
    ]);
    expect(await stack.exited).toEqual({ code: 1, signal: null });
    expect(stack.stderr.join('\n')).toContain(
      `port ${port} (--grpc-port, the orchestrator's gRPC API) is already in use`,
    );
    expect(stack.lines.filter((line) => !line.startsWith('stack'))).toEqual([]);
  }, 20_000);

  it('refuses bad arguments with its usage (exit 2)', async () => {
    const stack = new StackProcess(['--workers', 'many']);
    expect(await stack.exited).toEqual({ code: 2, signal: null });
    expect(stack.stderr.join('\n')).toContain('--workers many: must be an integer');
  }, 20_000);
});

describe('a compose service missing a required variable', () => {
  it.each(['worker-manager', 'metrics-collector', 'orchestrator'])(
    '%s stops at start with its configuration error naming it (exit 78), no crash loop',
    async (app) => {
      const main = join(ROOT, 'apps', app, 'dist', 'main.js');
      // Built by the `pnpm stack` test above (or any earlier build).
      if (!existsSync(main)) throw new Error(`${main} is missing: build the apps first`);
      const env = environmentOf(loadCompose(COMPOSE_FILE).services[app] ?? {});
      delete env['REDIS_URL'];
      const result = await run([main], { ...env, GRPC_PORT: '0', HTTP_PORT: '0' });
      expect(result.code).toBe(78);
      expect(result.stderr).toContain('REDIS_URL is required');
    },
    20_000,
  );
});
