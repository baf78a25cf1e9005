/**
 * The server around the API: reflection (a client that knows nothing else calls GetWorkflow),
 * health (SERVING once started, NOT_SERVING while draining and shutting down), server-side
 * deadlines, internal errors that leak nothing, and graceful shutdown.
 */
import { dirname, join } from 'node:path';
import {
  credentials,
  loadPackageDefinition,
  status,
  type ClientDuplexStream,
  type ClientReadableStream,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer, loadSync } from '@grpc/proto-loader';
import { connect, connectMonitor, type MultiAgentsClient } from '@multiagents/client';
import { ErrorCode, MultiAgentsError, RunState, type Envelope, type Run } from '@multiagents/contracts';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { makeEnvelope, waitFor } from '@multiagents/testing';
import { ControlPlaneServer } from './control-plane-server';
import { deferredApi } from './deferred-api';
import { MAX_UNSENT_EVENTS, type EventMonitorApi } from './event-monitor-service';
import type { OrchestratorApi } from './orchestrator-service';
import { startTestControlPlane, type TestControlPlane } from './test-stack';

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

function check(client: Dynamic, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Check({ service }, { deadline: Date.now() + 5_000 }, (err: ServiceError | null, res: Dynamic) =>
      err ? reject(err) : resolve(res.status as string),
    );
  });
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Protobuf varint, for framing FileDescriptorProtos into a FileDescriptorSet by hand. */
function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** A run in progress, as the stub orchestrator's watch tests read it. */
function runningRun(): Run {
  return {
    txId: 't-1',
    workflowId: 'w',
    workflowVersion: 1,
    state: RunState.Running,
    input: {},
    context: {},
    steps: {},
    createdAt: 1,
    updatedAt: 1,
    signals: {},
    completedCount: 0,
    outputCount: 0,
  };
}

describe('control plane server', () => {
  describe('over the embedded stack', () => {
    let plane: TestControlPlane;
    let client: MultiAgentsClient;

    beforeAll(async () => {
      plane = await startTestControlPlane();
      client = connect(plane.address);
    });

    afterAll(async () => {
      client.close();
      await plane.close();
    });

    it('lets a client that knows only server reflection list the services and call GetWorkflow', async () => {
      const { txId } = await client.startWorkflow('order_processing', { orderId: 'r-1' });
      await plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 });

      const reflectionProtoRoot = join(dirname(require.resolve('@grpc/reflection')), '..', 'proto');
      const reflectionDefinition = loadSync('grpc/reflection/v1/reflection.proto', {
        includeDirs: [reflectionProtoRoot],
        keepCase: true,
        oneofs: true,
      });
      const Reflection = serviceAt(
        loadPackageDefinition(reflectionDefinition),
        'grpc.reflection.v1.ServerReflection',
      );
      const reflection = new Reflection(plane.address, credentials.createInsecure()) as Dynamic;
      const stream: ClientDuplexStream<Dynamic, Dynamic> = reflection.ServerReflectionInfo();
      const answers: Dynamic[] = [];
      const next = (): Promise<Dynamic> =>
        new Promise((resolve, reject) => {
          const onData = (data: Dynamic): void => {
            stream.off('error', reject);
            resolve(data);
          };
          stream.once('data', onData);
          stream.once('error', reject);
        });
      stream.write({ list_services: '*' });
      answers.push(await next());
      const services = (answers[0].list_services_response.service as { name: string }[]).map((s) => s.name);
      expect(services).toEqual(
        expect.arrayContaining([
          'multiagents.v1.OrchestratorService',
          'multiagents.v1.WorkerManagerService',
          'grpc.health.v1.Health',
        ]),
      );

      stream.write({ file_containing_symbol: 'multiagents.v1.OrchestratorService' });
      const files = (await next()).file_descriptor_response.file_descriptor_proto as Buffer[];
      stream.end();
      reflection.close();
      expect(files.length).toBeGreaterThan(0);

      // FileDescriptorSet { repeated FileDescriptorProto file = 1; } framed by hand.
      const set = Buffer.concat(files.flatMap((file) => [Buffer.from([0x0a]), varint(file.length), file]));
      const generic = loadPackageDefinition(
        loadFileDescriptorSetFromBuffer(set, { keepCase: true, enums: String, longs: Number }),
      );
      const Orchestrator = serviceAt(generic, 'multiagents.v1.OrchestratorService');
      const dynamic = new Orchestrator(plane.address, credentials.createInsecure()) as Dynamic;
      const response: Dynamic = await new Promise((resolve, reject) =>
        dynamic.GetWorkflow({ tx_id: txId }, (err: ServiceError | null, res: Dynamic) =>
          err ? reject(err) : resolve(res),
        ),
      );
      dynamic.close();
      expect(response.run.tx_id).toBe(txId);
      expect(response.run.state).toBe('RUN_STATE_COMPLETED');
      expect(JSON.parse(Buffer.from(response.run.context).toString('utf8'))).toMatchObject({
        orderId: 'r-1',
        trackingId: 'trk-r-1',
      });
    });

    it('reports SERVING once started, and NOT_SERVING for the worker-manager while it drains', async () => {
      const health = healthClient(plane.address);
      try {
        expect(await check(health, '')).toBe('SERVING');
        expect(await check(health, 'multiagents.v1.OrchestratorService')).toBe('SERVING');
        expect(await check(health, 'multiagents.v1.WorkerManagerService')).toBe('SERVING');

        plane.gate.close();
        const { txId } = await client.startWorkflow('gated', { orderId: 'd-1' });
        await eventually(() => plane.stack.workerManager.inFlight()['gated.work'] === 1);
        let drained = false;
        const drain = client.drain({ drainTimeoutMs: 10_000 }).then((result) => {
          drained = true;
          return result;
        });
        await eventually(
          async () => (await check(health, 'multiagents.v1.WorkerManagerService')) === 'NOT_SERVING',
        );
        // Still draining: the held step is in flight, and the service says so.
        expect(drained).toBe(false);
        expect(await check(health, '')).toBe('NOT_SERVING');
        expect(await check(health, 'multiagents.v1.OrchestratorService')).toBe('SERVING');
        const during = await client.listWorkers();
        expect(during.draining).toBe(true);
        expect(during.workers.find((w) => w.name === 'gated.work')?.inFlight).toBe(1);

        plane.gate.open();
        const result = await drain;
        expect(result.managerId).toBe(plane.stack.workerManager.managerId);
        expect(result.workers.every((w) => w.inFlight === 0)).toBe(true);
        expect((await plane.stack.orchestrator.getRun(txId)).steps['hold']?.status).toBe('completed');
        // Idempotent; and nothing turns it back on.
        await client.drain();
        plane.server.setServing(true);
        expect(await check(health, 'multiagents.v1.WorkerManagerService')).toBe('NOT_SERVING');
      } finally {
        health.close();
      }
    });
  });

  it('answers a health watch of an unknown service SERVICE_UNKNOWN, keeping nothing per name', async () => {
    const plane = await startTestControlPlane();
    const health = healthClient(plane.address);
    try {
      const statuses: string[] = [];
      const watch: ClientReadableStream<Dynamic> = health.Watch({
        service: `no-such-service-${'x'.repeat(64)}`,
      });
      watch.on('data', (res: Dynamic) => statuses.push(res.status as string));
      watch.on('error', () => undefined);
      await eventually(() => statuses.length === 1);
      expect(statuses).toEqual(['SERVICE_UNKNOWN']);
      watch.cancel();
      // grpc-health-check keeps a watcher entry for every name ever watched: none was added.
      const watchers = (plane.server as unknown as { health: { watchers: Map<string, unknown> } }).health
        .watchers;
      expect([...watchers.keys()].filter((name) => name.startsWith('no-such-service'))).toEqual([]);
    } finally {
      health.close();
      await plane.close();
    }
  });

  it('answers a watch UNAVAILABLE while what it serves is not bound yet, and keeps nothing of it', async () => {
    const orchestrator = deferredApi<OrchestratorApi>('waiting for the broker');
    const monitor = deferredApi<EventMonitorApi>('waiting for the broker');
    const server = new ControlPlaneServer({
      orchestrator: orchestrator.api,
      eventMonitor: monitor.api,
      host: '127.0.0.1',
      port: 0,
    });
    const { address } = await server.start({ serving: false });
    const client = connect(address, { retry: { maxAttempts: 1 } });
    const monitorClient = connectMonitor(address, { retry: { maxAttempts: 1 } });
    try {
      const drain = async (events: AsyncIterable<unknown>): Promise<unknown> => {
        try {
          for await (const event of events) void event;
          return undefined;
        } catch (err) {
          return err;
        }
      };
      expect(await drain(client.watchWorkflow('tx-1'))).toMatchObject({ code: ErrorCode.Unavailable });
      expect(await drain(monitorClient.watchEvents({}))).toMatchObject({ code: ErrorCode.Unavailable });
      expect(server.openWatches).toBe(0);
    } finally {
      client.close();
      monitorClient.close();
      await server.close();
    }
  });

  it('ends a WatchEvents whose reader stopped reading once too many events wait for it', async () => {
    let listener: ((envelope: Envelope) => void) | undefined;
    const monitor = {
      watchEvents: async (_filter: unknown, onEvent: (envelope: Envelope) => void) => {
        listener = onEvent;
        return () => (listener = undefined);
      },
    } as unknown as EventMonitorApi;
    const server = new ControlPlaneServer({ eventMonitor: monitor, host: '127.0.0.1', port: 0 });
    const { address } = await server.start();
    const monitorClient = connectMonitor(address, { retry: { maxAttempts: 1 } });
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    try {
      const event = (n: number): Envelope => makeEnvelope({ payload: { n } });
      let received = 0;
      const reading = (async () => {
        try {
          for await (const got of monitorClient.watchEvents({})) {
            void got;
            received += 1;
            await stalled; // a reader that stops reading after its first event
          }
          return undefined;
        } catch (err) {
          return err;
        }
      })();
      await eventually(() => listener !== undefined);
      listener?.(event(0));
      await eventually(() => received === 1);
      for (let n = 1; n <= MAX_UNSENT_EVENTS + 100 && listener !== undefined; n++) listener(event(n));
      await eventually(() => server.openWatches === 0);
      release();
      expect(await reading).toMatchObject({ code: ErrorCode.ResourceExhausted });
    } finally {
      release();
      monitorClient.close();
      await server.close();
    }
  });

  it('lists monitored worker-managers with their lingering handlers, a forged count saturated rather than failing the call', async () => {
    const manager = { workers: ['payment.charge'], capacity: 2, inFlight: 0, seenAt: 1_000, live: true };
    const monitor = {
      listWorkers: () =>
        Promise.resolve([
          { ...manager, managerId: 'wm-a', lingering: 1 },
          // No heartbeat seen yet: the monitor does not know.
          { ...manager, managerId: 'wm-b' },
          // A forged heartbeat's count: a safe integer, beyond a uint32.
          { ...manager, managerId: 'wm-c', inFlight: 1e12, lingering: 1e12 },
        ]),
    } as unknown as EventMonitorApi;
    const server = new ControlPlaneServer({ eventMonitor: monitor, host: '127.0.0.1', port: 0 });
    const { address } = await server.start();
    const monitorClient = connectMonitor(address, { retry: { maxAttempts: 1 } });
    try {
      const listed = await monitorClient.listWorkers();
      expect(listed.map((m) => [m.managerId, m.inFlight, m.lingering])).toEqual([
        ['wm-a', 0, 1],
        ['wm-b', 0, 0],
        ['wm-c', 0xffff_ffff, 0xffff_ffff],
      ]);
    } finally {
      monitorClient.close();
      await server.close();
    }
  });

  it('refuses event-monitor requests with ids no store should see, listing every problem', async () => {
    const asked: string[] = [];
    const monitor = new Proxy({} as EventMonitorApi, {
      get: (_, name) => (name === 'then' ? undefined : () => (asked.push(String(name)), Promise.resolve())),
    });
    const server = new ControlPlaneServer({ eventMonitor: monitor, host: '127.0.0.1', port: 0 });
    const { address } = await server.start();
    const monitorClient = connectMonitor(address, { retry: { maxAttempts: 1 } });
    try {
      const problemsOf = async (call: Promise<unknown>): Promise<unknown> => {
        try {
          await call;
          return 'OK';
        } catch (err) {
          const error = err as MultiAgentsError;
          return [error.code, error.details?.['problems']];
        }
      };
      expect(await problemsOf(monitorClient.getTimeline('t'.repeat(4_096)))).toEqual([
        ErrorCode.InvalidArgument,
        ['tx_id is longer than 256 characters'],
      ]);
      expect(await problemsOf(monitorClient.replayDeadLetter('', '__proto__'))).toEqual([
        ErrorCode.InvalidArgument,
        ['topic is required', 'id "__proto__" is reserved'],
      ]);
      expect(
        await problemsOf(
          (async () => {
            for await (const event of monitorClient.watchEvents({ txId: 'constructor' })) void event;
          })(),
        ),
      ).toEqual([ErrorCode.InvalidArgument, ['tx_id "constructor" is reserved']]);
      expect(asked).toEqual([]);
    } finally {
      monitorClient.close();
      await server.close();
    }
  });

  describe('shutdown', () => {
    it('turns NOT_SERVING first, ends watch streams with UNAVAILABLE, then stops', async () => {
      const plane = await startTestControlPlane({ drainDelayMs: 8_000 });
      const health = healthClient(plane.address);
      const client = connect(plane.address, { retry: { maxAttempts: 1 } });
      try {
        const statuses: string[] = [];
        const watch: ClientReadableStream<Dynamic> = health.Watch({ service: '' });
        watch.on('data', (res: Dynamic) => statuses.push(res.status as string));
        watch.on('error', () => undefined);
        await eventually(() => statuses.includes('SERVING'));

        plane.gate.close();
        const { txId } = await client.startWorkflow('gated', { orderId: 's-1' });
        const seen: Run[] = [];
        const watching = (async () => {
          for await (const run of client.watchWorkflow(txId)) seen.push(run);
        })().then(
          () => undefined,
          (err: unknown) => err,
        );
        await eventually(() => seen.length === 1);

        const started = Date.now();
        const closing = plane.server.close();
        await eventually(() => statuses.at(-1) === 'NOT_SERVING', 8_000);
        // Health said NOT_SERVING while calls were still being answered (the drain delay).
        expect((await client.getWorkflow(txId)).txId).toBe(txId);
        await closing;
        // Graceful: every stream (watches, health watches) was ended, so nothing waited for the
        // 10 s shutdown timeout after the 8 s drain delay.
        expect(Date.now() - started).toBeLessThan(8_000 + 10_000);
        const err = await watching;
        expect(err).toBeInstanceOf(MultiAgentsError);
        expect((err as MultiAgentsError).code).toBe('UNAVAILABLE');
        expect(plane.server.openWatches).toBe(0);
        expect(plane.server.watchListeners).toBe(0);
      } finally {
        client.close();
        health.close();
        await plane.close();
      }
    }, 60_000);
  });

  describe('restart', () => {
    it('lets a client watch go on across a server restart on the same address', async () => {
      const plane = await startTestControlPlane();
      const port = plane.server.port ?? 0;
      const client = connect(plane.address, {
        retry: { maxAttempts: 20, initialBackoffMs: 50, maxBackoffMs: 200 },
      });
      let second: ControlPlaneServer | undefined;
      try {
        plane.gate.close();
        const { txId } = await client.startWorkflow('gated', { orderId: 'x-1' });
        const seen: Run[] = [];
        const watching = (async () => {
          for await (const run of client.watchWorkflow(txId)) seen.push(run);
        })();
        await eventually(() => seen.length === 1);
        // The API goes away (its streams end UNAVAILABLE) and comes back over the same engine.
        await plane.server.close();
        second = new ControlPlaneServer({
          orchestrator: plane.stack.orchestrator,
          workerManager: plane.stack.workerManager,
          host: '127.0.0.1',
          port,
        });
        await second.start();
        plane.gate.open();
        await eventually(() => plane.stack.workerManager.inFlight()['gated.work'] === 0);
        await eventually(
          async () => (await plane.stack.orchestrator.getRun(txId)).state === RunState.Waiting,
        );
        await plane.stack.orchestrator.signal(txId, 'approved', { ok: true });
        await watching;
        expect(seen.at(-1)?.state).toBe(RunState.Completed);
        expect(seen[0]?.state).toBe(RunState.Running);
      } finally {
        client.close();
        await second?.close();
        await plane.close();
      }
    });
  });

  describe('over a stub orchestrator', () => {
    const never = (): Promise<never> => new Promise<never>(() => undefined);
    const stub = (overrides: Partial<OrchestratorApi>): OrchestratorApi => ({
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
      ...overrides,
    });

    async function withServer(
      orchestrator: OrchestratorApi,
      options: { maxCallMs?: number; maxWatchMs?: number; shutdownTimeoutMs?: number },
      body: (client: MultiAgentsClient, server: ControlPlaneServer) => Promise<void>,
    ): Promise<void> {
      const server = new ControlPlaneServer({ orchestrator, host: '127.0.0.1', port: 0, ...options });
      const { address } = await server.start();
      const client = connect(address, { timeoutMs: 5_000 });
      try {
        await body(client, server);
      } finally {
        client.close();
        await server.close();
      }
    }

    it('turns an unexpected throw into INTERNAL without leaking its message or stack', async () => {
      const secret = new Error('connection string postgres://admin:hunter2@db');
      await withServer(
        stub({
          getRun: async () => {
            throw secret;
          },
          listDefinitions: async () => {
            // eslint-disable-next-line @typescript-eslint/only-throw-error -- the point: a non-Error thrown value
            throw 'a bare string';
          },
        }),
        {},
        async (client) => {
          for (const call of [() => client.getWorkflow('t-1'), () => client.listWorkflowDefinitions()]) {
            const err = (await call().catch((e: unknown) => e)) as MultiAgentsError;
            expect(err.code).toBe(ErrorCode.Internal);
            expect(err.message).toBe('internal error (see the server log)');
            expect(JSON.stringify(err)).not.toMatch(/hunter2|bare string|at /);
          }
        },
      );
    });

    it('applies a server-side deadline to calls without one (or with a longer one)', async () => {
      await withServer(stub({}), { maxCallMs: 200 }, async (client) => {
        const started = Date.now();
        const err = (await client
          .getWorkflow('t-1', { timeoutMs: 60_000 })
          .catch((e: unknown) => e)) as MultiAgentsError;
        expect(err.code).toBe('DEADLINE_EXCEEDED');
        // The server's 200 ms, not the caller's 60 s.
        expect(Date.now() - started).toBeLessThan(30_000);
      });
    });

    it('ends a watch at the server-side limit and frees its listener', async () => {
      let listeners = 0;
      const run: Run = runningRun();
      await withServer(
        stub({
          getRun: async () => run,
          onRunChanged: () => {
            listeners++;
            return () => listeners--;
          },
        }),
        { maxWatchMs: 300 },
        async (client, server) => {
          const seen: Run[] = [];
          // The client watches again after each end at the server's limit, until its own deadline.
          const err = await (async () => {
            for await (const r of client.watchWorkflow('t-1', { timeoutMs: 1_000 })) seen.push(r);
          })().catch((e: unknown) => e as MultiAgentsError);
          expect(seen.map((r) => r.txId)).toEqual(['t-1']);
          expect((err as MultiAgentsError).code).toBe('DEADLINE_EXCEEDED');
          // The last watch is freed once the server sees the client's cancel.
          await waitFor(() => listeners === 0 && server.openWatches === 0, {
            timeoutMs: 5_000,
            description: 'the watches freed',
          });
        },
      );
    });

    it('a watch goes on past the server-side limit until the run ends', async () => {
      const running: Run = runningRun();
      let reads = 0;
      await withServer(
        stub({
          // The run ends while no watch is open: the watch opened after the limit reads it ended.
          getRun: async () =>
            ++reads === 1 ? running : { ...running, state: RunState.Completed, updatedAt: 2 },
        }),
        { maxWatchMs: 300 },
        async (client) => {
          const seen: string[] = [];
          for await (const r of client.watchWorkflow('t-1')) seen.push(r.state);
          expect(seen).toEqual([RunState.Running, RunState.Completed]);
          expect(reads).toBe(2);
        },
      );
    });

    it('cuts calls still in flight at the shutdown timeout', async () => {
      const server = new ControlPlaneServer({
        orchestrator: stub({}),
        host: '127.0.0.1',
        port: 0,
        shutdownTimeoutMs: 300,
      });
      const { address } = await server.start();
      const client = connect(address, { timeoutMs: 10_000, retry: { maxAttempts: 1 } });
      try {
        const hanging = client.getWorkflow('t-1').catch((e: unknown) => e as MultiAgentsError);
        await new Promise((resolve) => setTimeout(resolve, 50));
        const started = Date.now();
        await server.close();
        // Cut at the 300 ms shutdown timeout, not left to the call's own 10 s deadline.
        expect(Date.now() - started).toBeLessThan(9_000);
        const err = await hanging;
        expect(err).toBeInstanceOf(MultiAgentsError);
        expect([status.UNAVAILABLE, status.CANCELLED, status.INTERNAL]).toContain(
          (err as { grpcCode?: number }).grpcCode,
        );
      } finally {
        client.close();
      }
    });

    it('rejects invalid options listing every problem', () => {
      expect(
        () =>
          new ControlPlaneServer({
            orchestrator: stub({}),
            port: 70_000,
            maxMessageBytes: 0,
            maxCallMs: -1,
            drainDelayMs: 1.5,
          }),
      ).toThrow(
        /port must be an integer from 0 to 65535.*maxMessageBytes must be a positive integer.*maxCallMs must be a positive integer.*drainDelayMs must be a non-negative integer/,
      );
    });
  });
});
