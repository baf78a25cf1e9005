/**
 * Every bad input of issue 4 over a real socket: NOT_FOUND, INVALID_ARGUMENT with every problem,
 * ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED (the server goes on serving),
 * malformed protobuf bytes, and streams the client abandons.
 */
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { connect, RpcError, type MultiAgentsClient } from '@multiagents/client';
import {
  AlreadyExistsError,
  DefinitionNotFoundError,
  ErrorCode,
  FailedPreconditionError,
  MultiAgentsError,
  ResourceExhaustedError,
  RunNotFoundError,
  RunState,
  ValidationError,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { startTestControlPlane, type TestControlPlane } from './test-stack';

jest.setTimeout(30_000);

async function failure(promise: Promise<unknown>): Promise<MultiAgentsError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof MultiAgentsError)) throw new Error(`expected a MultiAgentsError, got ${String(err)}`);
  return err;
}

async function eventually(check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Sends raw bytes to a method, as a client with the wrong (or a corrupted) schema would. */
function rawUnary(address: string, path: string, bytes: Buffer): Promise<ServiceError | Buffer> {
  const raw = new Client(address, credentials.createInsecure());
  return new Promise((resolve) => {
    raw.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      new Metadata(),
      { deadline: Date.now() + 5_000 },
      (err, res) => {
        raw.close();
        resolve(err ?? (res as Buffer));
      },
    );
  });
}

describe('control plane bad input over gRPC', () => {
  let plane: TestControlPlane;
  let client: MultiAgentsClient;
  let finishedTxId: string;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    client = connect(plane.address, { timeoutMs: 10_000 });
    ({ txId: finishedTxId } = await client.startWorkflow('order_processing', { orderId: 'done-1' }));
    await plane.stack.orchestrator.waitForTerminal(finishedTxId, { timeoutMs: 5_000 });
  });

  afterAll(async () => {
    client.close();
    await plane.close();
  });

  it('answers NOT_FOUND for unknown runs and workflows', async () => {
    const run = await failure(client.getWorkflow('no-such-run'));
    expect(run).toBeInstanceOf(RunNotFoundError);
    expect(run.code).toBe(ErrorCode.NotFound);
    expect((run as RunNotFoundError).txId).toBe('no-such-run');

    const definition = await failure(client.getWorkflowDefinition('no_such_workflow', { version: 3 }));
    expect(definition).toBeInstanceOf(DefinitionNotFoundError);
    expect((definition as DefinitionNotFoundError).version).toBe(3);

    expect((await failure(client.startWorkflow('no_such_workflow', {}))).code).toBe(ErrorCode.NotFound);
    expect((await failure(client.signalWorkflow('no-such-run', 'x'))).code).toBe(ErrorCode.NotFound);
    expect((await failure(client.cancelWorkflow('no-such-run'))).code).toBe(ErrorCode.NotFound);
    const watch = async (): Promise<void> => {
      for await (const _ of client.watchWorkflow('no-such-run')) {
        /* never reached */
      }
    };
    expect((await failure(watch())).code).toBe(ErrorCode.NotFound);
  });

  it('answers INVALID_ARGUMENT listing every problem of an invalid definition, and stores nothing', async () => {
    const invalid = {
      id: 'broken',
      version: 0,
      steps: [
        { name: 'a', kind: 'task', worker: 'no.such.worker' },
        { name: 'a', kind: 'task', worker: 'inventory.reserve', when: 'context.total >' },
      ],
    } as unknown as WorkflowDefinition;
    const err = await failure(client.registerWorkflow(invalid));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.code).toBe(ErrorCode.InvalidArgument);
    const problems = (err as ValidationError).problems;
    expect(problems.length).toBeGreaterThanOrEqual(4);
    const text = problems.join('\n');
    expect(text).toMatch(/version must be an integer >= 1/);
    expect(text).toMatch(/unknown worker "no\.such\.worker"/);
    expect(text).toMatch(/duplicate step name/);
    expect(text).toMatch(/when "context\.total >" does not compile/);
    // The message carries every problem too (for clients that only read the status message).
    for (const problem of problems) expect(err.message).toContain(problem);
    expect((await client.listWorkflowDefinitions()).map((d) => d.id)).not.toContain('broken');
  });

  it('answers INVALID_ARGUMENT listing every problem of a bad start request', async () => {
    const err = await failure(client.startWorkflow('', [1, 2] as never, { idempotencyKey: '' }));
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).problems).toEqual([
      'workflow_id is required',
      'input must be a JSON object',
      'idempotency_key is required',
    ]);
  });

  it('answers ALREADY_EXISTS for a reused idempotency key with a different input, or a changed definition version', async () => {
    const first = await client.startWorkflow(
      'order_processing',
      { orderId: 'k-1' },
      { idempotencyKey: 'dup-key' },
    );
    const err = await failure(
      client.startWorkflow('order_processing', { orderId: 'k-2' }, { idempotencyKey: 'dup-key' }),
    );
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.details).toEqual({ txId: first.txId });

    const definition = await client.getWorkflowDefinition('order_processing');
    const changed = { ...definition, description: 'changed without a new version' };
    expect(await failure(client.registerWorkflow(changed))).toBeInstanceOf(AlreadyExistsError);
  });

  it('answers FAILED_PRECONDITION to a signal or a cancel on a terminal run', async () => {
    const signal = await failure(client.signalWorkflow(finishedTxId, 'approved', { ok: true }));
    expect(signal).toBeInstanceOf(FailedPreconditionError);
    expect(signal.details).toMatchObject({ txId: finishedTxId, state: RunState.Completed });
    const cancel = await failure(client.cancelWorkflow(finishedTxId));
    expect(cancel).toBeInstanceOf(FailedPreconditionError);
  });

  it('answers RESOURCE_EXHAUSTED to a 20 MiB start input and keeps serving others', async () => {
    const other = connect(plane.address);
    try {
      const big = { blob: 'x'.repeat(20 * 1024 * 1024) };
      const started = Date.now();
      const [err, meanwhile] = await Promise.all([
        failure(client.startWorkflow('order_processing', big)),
        other.getWorkflow(finishedTxId),
      ]);
      expect(err).toBeInstanceOf(ResourceExhaustedError);
      expect(err.code).toBe(ErrorCode.ResourceExhausted);
      expect(meanwhile.state).toBe(RunState.Completed);
      expect(Date.now() - started).toBeLessThan(30_000);
      // Under the transport limit but over the orchestrator's payload limit: the domain says no.
      const medium = await failure(client.startWorkflow('order_processing', { blob: 'y'.repeat(300_000) }));
      expect(medium).toBeInstanceOf(ResourceExhaustedError);
      expect(medium.message).toMatch(/more than the 262144-byte limit/);
      // And the same connection goes on working.
      expect((await client.getWorkflow(finishedTxId)).txId).toBe(finishedTxId);
    } finally {
      other.close();
    }
  });

  it('answers INVALID_ARGUMENT to malformed protobuf bytes, and keeps serving', async () => {
    // Field 1 (tx_id) as a length-delimited value claiming ~4 GiB: cannot decode.
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    for (const method of ['GetWorkflow', 'StartWorkflow', 'RegisterWorkflow', 'ListWorkflows']) {
      const answer = await rawUnary(plane.address, `/multiagents.v1.OrchestratorService/${method}`, garbage);
      expect(answer).toBeInstanceOf(Error);
      expect((answer as ServiceError).code).toBe(status.INVALID_ARGUMENT);
      expect((answer as ServiceError).details).toMatch(/malformed request/);
    }
    const wm = await rawUnary(plane.address, '/multiagents.v1.WorkerManagerService/Drain', garbage);
    expect((wm as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    // Well-formed bytes of the right message still work on the same server.
    const ok = await rawUnary(
      plane.address,
      '/multiagents.v1.OrchestratorService/ListWorkflowDefinitions',
      Buffer.alloc(0),
    );
    expect(Buffer.isBuffer(ok)).toBe(true);
    expect(plane.stack.workerManager.workers().length).toBeGreaterThan(0);
  });

  it('frees the listener of a stream the client cancels (break, abort signal, deadline)', async () => {
    const orchestrator = plane.stack.orchestrator;
    const original = orchestrator.onRunChanged.bind(orchestrator);
    let active = 0;
    const spy = jest.spyOn(orchestrator, 'onRunChanged').mockImplementation((listener) => {
      active++;
      const off = original(listener);
      return () => {
        active--;
        off();
      };
    });
    try {
      plane.gate.close();
      const { txId } = await client.startWorkflow('gated', { orderId: 'c-1' });

      // 1. break out of the loop after the first message.
      for await (const run of client.watchWorkflow(txId)) {
        expect(run.txId).toBe(txId);
        expect(active).toBe(1);
        break;
      }
      await eventually(() => active === 0 && plane.server.openWatches === 0);
      expect(plane.server.watchListeners).toBe(0);

      // 2. abort signal, with several streams on the same run.
      const controller = new AbortController();
      const seens: RunState[][] = [[], [], []];
      const watchers = seens.map(async (seen) => {
        try {
          for await (const run of client.watchWorkflow(txId, { signal: controller.signal }))
            seen.push(run.state);
        } catch (err) {
          return { seen, err };
        }
        return { seen, err: undefined };
      });
      // Every stream has its first message (the run as it is) before the abort: the server
      // holding three listeners does not mean each client has read what they sent.
      await eventually(() => plane.server.watchListeners === 3 && seens.every((seen) => seen.length >= 1));
      expect(active).toBe(1); // one orchestrator listener fans out to every stream
      controller.abort();
      for (const result of await Promise.all(watchers)) {
        expect(result.seen.length).toBeGreaterThanOrEqual(1);
        expect((result.err as RpcError).code).toBe(ErrorCode.Cancelled);
      }
      await eventually(() => active === 0 && plane.server.openWatches === 0);

      // 3. the client's deadline passes.
      const deadline = async (): Promise<void> => {
        for await (const _ of client.watchWorkflow(txId, { timeoutMs: 300 })) {
          /* the run is held by the gate: only the first state arrives */
        }
      };
      expect((await failure(deadline())).code).toBe('DEADLINE_EXCEEDED');
      await eventually(() => active === 0 && plane.server.openWatches === 0);
      expect(plane.server.watchListeners).toBe(0);
    } finally {
      spy.mockRestore();
      plane.gate.open();
    }
  });
});
