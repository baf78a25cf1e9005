/**
 * The services' logs as an operator reads them: on a terminal, pino-pretty's readable lines; in
 * a pipe (a log collector), one JSON object per line with each key once. The orchestrator runs
 * from dist (built by the global setup) in the embedded mode, hosting the order example's workers,
 * at LOG_LEVEL=debug, and does some work: a run that completes and one whose worker fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connect } from '@multiagents/client';
import { duplicateJsonKeys, freePort, waitFor } from '@multiagents/testing';
import { ROOT } from './support/repo';

jest.setTimeout(120_000);

const MAIN = join(ROOT, 'apps', 'orchestrator', 'dist', 'main.js');
const ANSI = /\u001b\[[0-9;]*m/g;

interface Service {
  readonly child: ChildProcess;
  readonly output: () => string;
}

async function startOrchestrator(onTerminal: boolean, grpcPort: number): Promise<Service> {
  const env = {
    ...process.env,
    MULTIAGENTS_BACKEND: 'memory',
    MULTIAGENTS_WORKER_MODULES: join(ROOT, 'examples', 'order-processing', 'dist', 'service-workers.js'),
    MULTIAGENTS_DEFINITIONS: join(ROOT, 'examples', 'order-processing', 'src', 'workflow.yaml'),
    GRPC_PORT: String(grpcPort),
    GRPC_HOST: '127.0.0.1',
    LOG_LEVEL: 'debug',
  };
  // `script` gives the service a pseudo-terminal as its stdout, as when a person starts it.
  const child = onTerminal
    ? spawn('script', ['-qefc', `'${process.execPath}' '${MAIN}'`, '/dev/null'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  await waitFor(() => /gRPC control plane listening/.test(output), {
    timeoutMs: 30_000,
    description: `the orchestrator listening:\n${output}`,
  });
  return { child, output: () => output };
}

async function stop(service: Service): Promise<void> {
  const { child } = service;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  // A killed `script` closes the terminal, and the hang-up ends the service under it.
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** A run that completes and one whose shipping worker refuses (its failure is logged). */
async function doSomeWork(grpcPort: number): Promise<void> {
  const client = connect(`127.0.0.1:${grpcPort}`);
  try {
    for (const input of [
      { orderId: 'log-1', total: 5 },
      { orderId: 'log-2', total: 5, failShipping: true },
    ]) {
      const { txId } = await client.startWorkflow('order_processing', input);
      for await (const run of client.watchWorkflow(txId)) void run;
    }
  } finally {
    client.close();
  }
}

describe('service logs', () => {
  it('are JSON lines with every key once when stdout is not a terminal', async () => {
    const port = await freePort();
    const service = await startOrchestrator(false, port);
    try {
      await doSomeWork(port);
      await waitFor(() => /carrier refused order log-2/.test(service.output()), { timeoutMs: 10_000 });
    } finally {
      await stop(service);
    }
    const lines = service.output().trim().split('\n');
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) {
      expect({ line, duplicates: duplicateJsonKeys(line) }).toEqual({ line, duplicates: [] });
      expect(JSON.parse(line)).toMatchObject({
        service: 'orchestrator',
        level: expect.any(Number),
        msg: expect.any(String),
      });
    }
    const messages = lines.map((line) => (JSON.parse(line) as { msg: string }).msg);
    expect(messages).toEqual(
      expect.arrayContaining([
        'gRPC control plane listening',
        'orchestrator started',
        'attempt failed: carrier refused order log-2',
        'draining',
      ]),
    );
  });

  it('are readable lines, not JSON, on a terminal', async () => {
    const port = await freePort();
    const service = await startOrchestrator(true, port);
    try {
      await doSomeWork(port);
      await waitFor(() => /carrier refused order log-2/.test(service.output()), { timeoutMs: 10_000 });
    } finally {
      await stop(service);
    }
    const lines = service
      .output()
      .replace(ANSI, '')
      .split(/\r?\n/)
      .filter((line) => line.trim() !== '');
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.filter((line) => line.trimStart().startsWith('{'))).toEqual([]);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: orchestrator\/grpc: gRPC control plane listening \{.*"port":\d+/,
        ),
        expect.stringMatching(
          /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: orchestrator\/worker-manager: attempt failed: carrier refused order log-2 \{.*"code":"CARRIER_REFUSED"/,
        ),
      ]),
    );
  });
});
