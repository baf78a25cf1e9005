/**
 * A control plane with only a worker-manager (the standalone worker-manager service): it serves
 * WorkerManagerService, health and reflection, and nothing of OrchestratorService.
 */
import { dirname, join } from 'node:path';
import {
  credentials,
  loadPackageDefinition,
  status,
  type ClientDuplexStream,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { connect, type WorkerStatus } from '@multiagents/client';
import { MultiAgentsError, ValidationError } from '@multiagents/contracts';
import { startEmbedded, type EmbeddedStack } from '@multiagents/embedded';
import { defineWorker } from '@multiagents/worker-sdk';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import {
  ControlPlaneServer,
  ORCHESTRATOR_SERVICE_NAME,
  WORKER_MANAGER_SERVICE_NAME,
} from './control-plane-server';
import type { OrchestratorApi } from './orchestrator-service';
import { Gate, gatedWorkflow } from './test-stack';
import { drainCallLimitMs } from './worker-manager-service';

jest.setTimeout(30_000);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- clients built at run time from descriptors
type Dynamic = any;

function serviceAt(root: GrpcObject, path: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  return node as ServiceClientConstructor;
}

function healthClient(address: string): Dynamic {
  const definition = loadSync('health/v1/health.proto', {
    includeDirs: [join(dirname(healthProtoPath), '..', '..')],
    keepCase: true,
    enums: String,
  });
  const Health = serviceAt(loadPackageDefinition(definition), 'grpc.health.v1.Health');
  return new Health(address, credentials.createInsecure()) as Dynamic;
}

/** The status of `service`, or the gRPC error code the check ended with (NOT_FOUND: unknown). */
function check(client: Dynamic, service: string): Promise<string> {
  return new Promise((resolve) => {
    client.Check({ service }, { deadline: Date.now() + 5_000 }, (err: ServiceError | null, res: Dynamic) =>
      resolve(err ? `error ${status[err.code]}` : (res.status as string)),
    );
  });
}

/** The services server reflection lists at `address`. */
async function reflectedServices(address: string): Promise<string[]> {
  const reflectionProtoRoot = join(dirname(require.resolve('@grpc/reflection')), '..', 'proto');
  const definition = loadSync('grpc/reflection/v1/reflection.proto', {
    includeDirs: [reflectionProtoRoot],
    keepCase: true,
    oneofs: true,
  });
  const Reflection = serviceAt(loadPackageDefinition(definition), 'grpc.reflection.v1.ServerReflection');
  const reflection = new Reflection(address, credentials.createInsecure()) as Dynamic;
  try {
    const stream: ClientDuplexStream<Dynamic, Dynamic> = reflection.ServerReflectionInfo({
      deadline: Date.now() + 5_000,
    });
    const answer = new Promise<Dynamic>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    stream.write({ list_services: '*' });
    const response = await answer;
    stream.end();
    return (response.list_services_response.service as { name: string }[]).map((s) => s.name).sort();
  } finally {
    reflection.close();
  }
}

async function eventually(condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A stack whose worker-manager alone is served (its orchestrator only feeds it commands). */
async function startWorkerManagerOnly(options: { serving?: boolean; onDrain?: () => void } = {}): Promise<{
  stack: EmbeddedStack;
  server: ControlPlaneServer;
  address: string;
  gate: Gate;
  close(): Promise<void>;
}> {
  const gate = new Gate();
  const stack = await startEmbedded({
    workers: [
      defineWorker('inventory.reserve', () => ({ reservationId: 'res-1' })),
      defineWorker('inventory.release', () => ({ released: true })),
      defineWorker(
        'gated.work',
        async () => {
          await gate.wait();
          return { held: true };
        },
        { concurrency: 3 },
      ),
    ],
    definitions: [gatedWorkflow],
    workerManager: { drainTimeoutMs: 5_000 },
  });
  const server = new ControlPlaneServer({
    workerManager: stack.workerManager,
    host: '127.0.0.1',
    port: 0,
    ...(options.onDrain ? { onDrain: options.onDrain } : {}),
  });
  const { address } = await server.start(options.serving === undefined ? {} : { serving: options.serving });
  return {
    stack,
    server,
    address,
    gate,
    async close() {
      gate.open();
      await server.close();
      await stack.close();
    },
  };
}

describe('the limit of a Drain call', () => {
  it("follows the drain timeout asked for, else the manager's configured one, never below the usual limit", () => {
    expect(drainCallLimitMs(120_000, 30_000, 60_000)).toBe(125_000);
    // A manager configured with a 2-minute drain: the call is not cut at the default's 35 s.
    expect(drainCallLimitMs(undefined, 120_000, 60_000)).toBe(125_000);
    expect(drainCallLimitMs(undefined, 100, 60_000)).toBe(60_000);
  });
});

describe('control plane server with only a worker-manager', () => {
  it('answers ListWorkers and Drain, and turns health NOT_SERVING when a drain begins', async () => {
    let drains = 0;
    const plane = await startWorkerManagerOnly({ onDrain: () => drains++ });
    const client = connect(plane.address, { timeoutMs: 10_000 });
    const health = healthClient(plane.address);
    try {
      expect(await check(health, '')).toBe('SERVING');
      expect(await check(health, WORKER_MANAGER_SERVICE_NAME)).toBe('SERVING');
      // Not served here, so unknown to health as well.
      expect(await check(health, ORCHESTRATOR_SERVICE_NAME)).toBe('error NOT_FOUND');

      const listed = await client.listWorkers();
      expect(listed.managerId).toBe(plane.stack.workerManager.managerId);
      expect(listed.draining).toBe(false);
      expect(listed.workers.map((w) => w.name).sort()).toEqual([
        'gated.work',
        'inventory.release',
        'inventory.reserve',
      ]);
      expect(listed.workers.find((w) => w.name === 'gated.work')).toMatchObject({ inFlight: 0, capacity: 3 });

      plane.gate.close();
      const { txId } = await plane.stack.orchestrator.startWorkflow('gated', { orderId: 'w-1' });
      await eventually(() => plane.stack.workerManager.inFlight()['gated.work'] === 1);
      let drained = false;
      const drain = client.drain({ drainTimeoutMs: 10_000 }).then((result) => {
        drained = true;
        return result;
      });
      await eventually(async () => (await check(health, '')) === 'NOT_SERVING');
      expect(await check(health, WORKER_MANAGER_SERVICE_NAME)).toBe('NOT_SERVING');
      expect(plane.server.draining).toBe(true);
      expect(drains).toBe(1);
      // The held step is still in flight: the drain waits for it, and ListWorkers says so.
      expect(drained).toBe(false);
      const during = await client.listWorkers();
      expect(during.draining).toBe(true);
      expect(during.workers.find((w) => w.name === 'gated.work')?.inFlight).toBe(1);

      plane.gate.open();
      const result = await drain;
      expect(result.managerId).toBe(plane.stack.workerManager.managerId);
      expect(result.workers.every((w) => w.inFlight === 0)).toBe(true);
      expect((await plane.stack.orchestrator.getRun(txId)).steps['hold']?.status).toBe('completed');

      // Drained for good: no new command is taken, a second Drain is a no-op, and nothing turns
      // health back on.
      await client.drain();
      expect(drains).toBe(1);
      plane.server.setServing(true);
      expect(await check(health, '')).toBe('NOT_SERVING');
      expect(await check(health, WORKER_MANAGER_SERVICE_NAME)).toBe('NOT_SERVING');
      const delivered = plane.stack.workerManager.counters.delivered;
      await plane.stack.orchestrator.startWorkflow('gated', { orderId: 'w-2' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(plane.stack.workerManager.counters.delivered).toBe(delivered);
      expect((await client.listWorkers()).draining).toBe(true);
    } finally {
      health.close();
      client.close();
      await plane.close();
    }
  });

  it('shows a handler that outlived its attempt as lingering in ListWorkers until it settles', async () => {
    const gate = new Gate();
    const stack = await startEmbedded({
      workers: [
        defineWorker('inventory.reserve', () => ({ reservationId: 'res-1' })),
        defineWorker('inventory.release', () => ({ released: true })),
        // Ignores ctx.signal: its attempt times out and the handler runs on, holding the only slot.
        defineWorker(
          'gated.work',
          async () => {
            await gate.wait();
            return { held: true };
          },
          { concurrency: 1, timeoutMs: 50 },
        ),
      ],
      definitions: [gatedWorkflow],
      workerManager: { drainTimeoutMs: 5_000 },
    });
    const server = new ControlPlaneServer({ workerManager: stack.workerManager, host: '127.0.0.1', port: 0 });
    const { address } = await server.start();
    const client = connect(address, { timeoutMs: 10_000 });
    const gated = async (): Promise<WorkerStatus | undefined> =>
      (await client.listWorkers()).workers.find((w) => w.name === 'gated.work');
    try {
      expect(await gated()).toMatchObject({ inFlight: 0, capacity: 1, lingering: 0 });
      await stack.orchestrator.startWorkflow('gated', { orderId: 'l-1' });
      await eventually(async () => (await gated())?.lingering === 1);
      expect(gate.entered).toBe(1);

      gate.open();
      await eventually(async () => (await gated())?.lingering === 0);
    } finally {
      gate.open();
      client.close();
      await server.close();
      await stack.close();
    }
  });

  it('lists only the services it serves over reflection, and answers OrchestratorService UNIMPLEMENTED', async () => {
    const plane = await startWorkerManagerOnly();
    const client = connect(plane.address, { timeoutMs: 5_000, retry: { maxAttempts: 1 } });
    try {
      expect(await reflectedServices(plane.address)).toEqual([
        'grpc.health.v1.Health',
        WORKER_MANAGER_SERVICE_NAME,
      ]);
      for (const call of [
        () => client.getWorkflow('t-1'),
        () => client.listWorkflowDefinitions(),
        () => client.startWorkflow('gated', {}),
      ]) {
        const err = (await call().catch((e: unknown) => e)) as MultiAgentsError;
        expect(err).toBeInstanceOf(MultiAgentsError);
        expect(err.code).toBe('UNIMPLEMENTED');
        expect((err as { grpcCode?: number }).grpcCode).toBe(status.UNIMPLEMENTED);
      }
    } finally {
      client.close();
      await plane.close();
    }
  });

  it('stays NOT_SERVING after start({ serving: false }) until setServing(true)', async () => {
    const plane = await startWorkerManagerOnly({ serving: false });
    const client = connect(plane.address, { timeoutMs: 5_000 });
    const health = healthClient(plane.address);
    try {
      expect(await check(health, '')).toBe('NOT_SERVING');
      expect(await check(health, WORKER_MANAGER_SERVICE_NAME)).toBe('NOT_SERVING');
      // The API answers already: a probe can tell "up but not ready" from "down".
      expect((await client.listWorkers()).workers).toHaveLength(3);
      plane.server.setServing(true);
      expect(await check(health, '')).toBe('SERVING');
      expect(await check(health, WORKER_MANAGER_SERVICE_NAME)).toBe('SERVING');
    } finally {
      health.close();
      client.close();
      await plane.close();
    }
  });

  it('closes promptly (no watch streams to end)', async () => {
    const plane = await startWorkerManagerOnly();
    const health = healthClient(plane.address);
    try {
      expect(await check(health, '')).toBe('SERVING');
      const started = Date.now();
      await plane.server.close();
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(plane.server.openWatches).toBe(0);
      expect(plane.server.watchListeners).toBe(0);
    } finally {
      health.close();
      await plane.close();
    }
  });
});

describe('control plane server options', () => {
  const never = (): Promise<never> => new Promise<never>(() => undefined);
  const orchestrator: OrchestratorApi = {
    registerWorkflow: never,
    unhostedWorkers: () => Promise.resolve([]),
    listWorkerManagers: () => Promise.resolve([]),
    getDefinition: never,
    listDefinitions: never,
    startWorkflow: never,
    getRun: never,
    listRuns: never,
    signal: never,
    cancel: never,
    retryStep: never,
    skipStep: never,
    resumeCompensation: never,
    onRunChanged: () => () => undefined,
  };

  it('needs an orchestrator or a worker-manager', () => {
    expect(() => new ControlPlaneServer({ port: 0 })).toThrow(ValidationError);
    expect(() => new ControlPlaneServer({ port: 0 })).toThrow(
      /orchestrator, workerManager or eventMonitor is required/,
    );
    let problems: readonly string[] = [];
    try {
      new ControlPlaneServer({
        orchestrator: null as unknown as OrchestratorApi,
        workerManager: 'x' as unknown as never,
        port: 0,
      });
    } catch (err) {
      problems = (err as ValidationError).problems;
    }
    expect(problems).toEqual([
      'orchestrator must be an object (got null)',
      'workerManager must be an object (got string)',
    ]);
  });

  it('lists no WorkerManagerService over reflection when only an orchestrator is served', async () => {
    const server = new ControlPlaneServer({ orchestrator, host: '127.0.0.1', port: 0 });
    const { address } = await server.start();
    const health = healthClient(address);
    try {
      expect(await reflectedServices(address)).toEqual(['grpc.health.v1.Health', ORCHESTRATOR_SERVICE_NAME]);
      expect(await check(health, ORCHESTRATOR_SERVICE_NAME)).toBe('SERVING');
      expect(await check(health, WORKER_MANAGER_SERVICE_NAME)).toBe('error NOT_FOUND');
      expect(server.draining).toBe(false);
    } finally {
      health.close();
      await server.close();
    }
  });
});
