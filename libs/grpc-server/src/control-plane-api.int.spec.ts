/**
 * The whole control plane through the typed client, over a real socket, against the embedded
 * stack: definitions, runs, watch, signal, cancel, workers, operator actions.
 */
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { FailedPreconditionError, RunState, type Run, type WorkflowDefinition } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { startTestControlPlane, orderWorkflow, type TestControlPlane } from './test-stack';

jest.setTimeout(20_000);

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** JSON with sorted keys: equal for deep-equal values whatever their key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

async function collect(iterable: AsyncIterable<Run>): Promise<Run[]> {
  const runs: Run[] = [];
  for await (const run of iterable) runs.push(run);
  return runs;
}

describe('control plane API over gRPC (embedded mode)', () => {
  let plane: TestControlPlane;
  let client: MultiAgentsClient;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    client = connect(plane.address, { timeoutMs: 5_000 });
  });

  afterAll(async () => {
    client.close();
    await plane.close();
  });

  it('registers, gets and lists definitions', async () => {
    const definition: WorkflowDefinition = new WorkflowBuilder('greeting')
      .step('reserve', 'inventory.reserve', {
        compensation: 'inventory.release',
        retry: { maxAttempts: 2, nonRetryableErrors: ['NOPE'] },
        input: { orderId: 'context.name' },
        output: 'reservation',
        timeoutMs: 1_000,
      })
      .sleep('pause', 5)
      .build();
    expect(await client.registerWorkflow(definition)).toMatchObject({
      created: true,
      id: 'greeting',
      version: 1,
    });
    expect(await client.registerWorkflow(definition)).toMatchObject({
      created: false,
      id: 'greeting',
      version: 1,
    });
    expect(await client.getWorkflowDefinition('greeting')).toEqual(
      await plane.stack.orchestrator.getDefinition('greeting'),
    );
    expect(await client.getWorkflowDefinition('order_processing', { version: 1 })).toEqual(orderWorkflow);
    const summaries = await client.listWorkflowDefinitions();
    expect(summaries.map((s) => s.id)).toEqual(['gated', 'gated_order', 'greeting', 'order_processing']);
    expect(summaries.find((s) => s.id === 'greeting')).toEqual({
      id: 'greeting',
      latestVersion: 1,
      versions: [1],
    });
  });

  it('lists every live worker-manager replica, and warns at registration about workers none hosts', async () => {
    const managers = await client.listWorkerManagers();
    expect(managers).toHaveLength(1);
    expect(managers[0]?.workers).toEqual(expect.arrayContaining(['inventory.reserve', 'payment.charge']));
    expect(managers[0]?.managerId).toBe(plane.stack.workerManager.managerId);
    const hosted = await client.registerWorkflow(
      new WorkflowBuilder('hosted').step('a', 'inventory.reserve').build(),
    );
    expect(hosted.warnings).toEqual([]);
  });

  it('starts a run, watches it to completion and reads it back exactly as the orchestrator has it', async () => {
    const { txId, created } = await client.startWorkflow('order_processing', { orderId: 'o-1', total: 42 });
    expect(created).toBe(true);
    const runs = await collect(client.watchWorkflow(txId));
    expect(runs.at(-1)?.state).toBe(RunState.Completed);
    const run = await client.getWorkflow(txId);
    expect(run).toEqual(await plane.stack.orchestrator.getRun(txId));
    expect(run.context).toMatchObject({ orderId: 'o-1', reservationId: 'res-o-1', trackingId: 'trk-o-1' });
  });

  it('streams every transition of a compensating run, in order, exactly as the orchestrator wrote them', async () => {
    const everything: Run[] = [];
    const stop = plane.stack.orchestrator.onRunChanged((run) => everything.push(run));
    try {
      // The gate holds the run at `hold`, so the watch starts before everything that follows.
      const { txId } = await client.startWorkflow('gated_order', { orderId: 'w-1', total: 5, fail: true });
      const watched: Run[] = [];
      for await (const run of client.watchWorkflow(txId)) {
        watched.push(run);
        if (watched.length === 1) plane.gate.open();
      }
      const written = everything.filter((run) => run.txId === txId);
      const first = written.findIndex((run) => canonical(run) === canonical(watched[0]));
      expect(first).toBeGreaterThanOrEqual(0);
      // The gate opened only after the first message: the watch saw the run before `hold` ended.
      expect(watched[0]?.steps['hold']?.status).not.toBe('completed');
      expect(watched).toEqual(written.slice(first));
      const states = watched.map((run) => run.state);
      expect(states.at(-1)).toBe(RunState.Compensated);
      expect(states).toContain(RunState.Compensating);
      // The undo order is visible too: refund before release.
      const steps = watched.at(-1)?.steps ?? {};
      expect(steps['charge_payment']?.compensation?.status).toBe('completed');
      expect(steps['reserve_inventory']?.compensation?.status).toBe('completed');
      expect(steps['charge_payment']?.compensation?.startedAt ?? Infinity).toBeLessThanOrEqual(
        steps['reserve_inventory']?.compensation?.startedAt ?? -Infinity,
      );
      expect(watched.length).toBeGreaterThanOrEqual(5);
    } finally {
      stop();
      plane.gate.close();
    }
    await eventually(() => plane.server.watchListeners === 0);
  });

  it('returns the same run for a reused idempotency key', async () => {
    const first = await client.startWorkflow(
      'order_processing',
      { orderId: 'o-2' },
      { idempotencyKey: 'k-2' },
    );
    const again = await client.startWorkflow(
      'order_processing',
      { orderId: 'o-2' },
      { idempotencyKey: 'k-2' },
    );
    expect(again).toEqual({ txId: first.txId, created: false });
  });

  it('lists runs with filters and cursor pagination', async () => {
    const started = [];
    for (let i = 0; i < 3; i++) {
      const { txId } = await client.startWorkflow('order_processing', { orderId: `p-${i}`, fail: true });
      started.push(txId);
      await plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 });
    }
    const seen: string[] = [];
    let pageToken: string | undefined;
    for (let page = 0; page < 10; page++) {
      const result = await client.listWorkflows(
        { state: RunState.Compensated, workflowId: 'order_processing' },
        { pageSize: 2, ...(pageToken === undefined ? {} : { pageToken }) },
      );
      expect(result.runs.length).toBeLessThanOrEqual(2);
      for (const run of result.runs) {
        expect(run.state).toBe(RunState.Compensated);
        seen.push(run.txId);
      }
      pageToken = result.nextPageToken;
      if (pageToken === undefined) break;
    }
    // Newest first, every compensated run exactly once.
    expect(seen.slice(0, 3)).toEqual([...started].reverse());
    expect(new Set(seen).size).toBe(seen.length);
    const none = await client.listWorkflows({
      workflowId: 'order_processing',
      createdAfter: Date.now() + 60_000,
    });
    expect(none.runs).toEqual([]);
  });

  it('delivers a signal to a waiting run', async () => {
    plane.gate.open();
    const { txId } = await client.startWorkflow('gated', { orderId: 'g-1' });
    await eventually(async () => (await client.getWorkflow(txId)).state === RunState.Waiting);
    const after = await client.signalWorkflow(txId, 'approved', { by: 'ops' });
    expect(after.txId).toBe(txId);
    const final = await plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 });
    expect(final.state).toBe(RunState.Completed);
    expect(final.context['approval']).toEqual({ by: 'ops' });
    plane.gate.close();
  });

  it('cancels a running run: completed steps are compensated', async () => {
    const { txId } = await client.startWorkflow('gated', { orderId: 'g-2' });
    await eventually(
      () => plane.gate.entered > 0 && plane.stack.workerManager.inFlight()['gated.work'] === 1,
    );
    const after = await client.cancelWorkflow(txId, 'changed my mind');
    expect([RunState.Cancelling, RunState.Cancelled]).toContain(after.state);
    plane.gate.open();
    const final = await plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 });
    expect(final.state).toBe(RunState.Cancelled);
    expect(final.steps['reserve_inventory']?.compensation?.status).toBe('completed');
    plane.gate.close();
  });

  it('lists the hosted workers', async () => {
    const list = await client.listWorkers();
    expect(list.managerId).toBe(plane.stack.workerManager.managerId);
    expect(list.draining).toBe(false);
    expect(list.workers.map((w) => w.name).sort()).toEqual([
      'gated.work',
      'inventory.release',
      'inventory.reserve',
      'payment.charge',
      'payment.refund',
      'shipping.ship',
    ]);
    for (const worker of list.workers) {
      expect(worker.capacity).toBeGreaterThan(0);
      expect(worker.inFlight).toBe(0);
      expect(worker.circuit).not.toBe('unknown');
    }
  });

  it('serves the operator actions: a compensated run refuses them with FAILED_PRECONDITION (see operator-actions.int.spec.ts)', async () => {
    const { txId } = await client.startWorkflow('order_processing', { orderId: 'u-1', fail: true });
    expect((await plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 })).state).toBe(
      RunState.Compensated,
    );
    for (const call of [
      () => client.retryStep(txId, 'ship_order'),
      () => client.skipStep(txId, 'ship_order', { trackingId: 'manual' }),
      () => client.resumeCompensation(txId),
    ]) {
      const err: unknown = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FailedPreconditionError);
      expect((err as FailedPreconditionError).message).toMatch(/run is compensated/);
    }
  });
});
