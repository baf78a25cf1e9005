/**
 * The typed client's retries over a real socket: while the server is unreachable, idempotent
 * calls (reads, a start with an idempotency key) retry with backoff until it is back; a start
 * without a key does not (a retry could start a second run).
 */
import { connect, RpcError } from '@multiagents/client';
import { RunState } from '@multiagents/contracts';
import { freePort } from '@multiagents/testing';
import { startTestControlPlane, type TestControlPlane } from './test-stack';

jest.setTimeout(20_000);

describe('client retries on UNAVAILABLE', () => {
  let plane: TestControlPlane | undefined;

  afterEach(async () => {
    await plane?.close();
    plane = undefined;
  });

  it('retries idempotent calls until the server is up, and never a start without a key', async () => {
    const port = await freePort();
    // As many attempts as the client allows (100, about the 10 s deadline at 100 ms apart): grpc-js
    // reconnects with its own growing backoff, so how many quick refusals come before the server
    // is seen up depends on the machine.
    const client = connect(`127.0.0.1:${port}`, {
      timeoutMs: 10_000,
      retry: { maxAttempts: 100, initialBackoffMs: 50, maxBackoffMs: 100 },
    });
    try {
      const withKey = client.startWorkflow(
        'order_processing',
        { orderId: 'r-1' },
        { idempotencyKey: 'retry-1' },
      );
      const withoutKey = client.startWorkflow('order_processing', { orderId: 'r-2' }).then(
        () => undefined,
        (err: unknown) => err,
      );
      const listing = client.listWorkflowDefinitions();
      await new Promise((resolve) => setTimeout(resolve, 300));
      plane = await startTestControlPlane({ port });

      const refused = await withoutKey;
      expect(refused).toBeInstanceOf(RpcError);
      expect((refused as RpcError).code).toBe('UNAVAILABLE');

      const { txId, created } = await withKey;
      expect(created).toBe(true);
      expect((await listing).map((d) => d.id)).toContain('order_processing');
      const run = await plane.stack.orchestrator.waitForTerminal(txId, { timeoutMs: 5_000 });
      expect(run.state).toBe(RunState.Completed);
      // Exactly one run: the retried start did not start a second one.
      const page = await client.listWorkflows({ workflowId: 'order_processing' });
      expect(page.runs.map((r) => r.txId)).toEqual([txId]);
    } finally {
      client.close();
    }
  });

  it('gives up within the call deadline when the server stays away', async () => {
    const port = await freePort();
    const client = connect(`127.0.0.1:${port}`, { timeoutMs: 600, retry: { maxAttempts: 100 } });
    try {
      const started = Date.now();
      const err = await client.getWorkflow('t-1').catch((e: unknown) => e);
      expect(['UNAVAILABLE', 'DEADLINE_EXCEEDED']).toContain((err as RpcError).code);
      // 100 attempts with backoff would take far longer: the deadline cut them off.
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      client.close();
    }
  });
});
