/**
 * Cancelling a run reaches the handler of its attempt in flight across a real broker: the
 * orchestrator's `step.cancel` notice is broadcast (Redis pub/sub, core NATS) to a worker-manager on
 * a connection of its own, whose handler sees `ctx.signal` fire. Signed notices only: an unsigned
 * one injected by someone with access to the broker is refused and counted, and stops nothing.
 */
import { EventType, RunState, Topics, createKeyRing } from '@multiagents/contracts';
import { Orchestrator, WorkflowBuilder } from '@multiagents/core';
import { itOnEachBroker, makeEnvelope, waitFor, type ServerProcess } from '@multiagents/testing';
import { WorkerManager, defineWorker, type WorkerDefinition } from '@multiagents/worker-sdk';
import { randomBytes } from 'node:crypto';
import { openBackend, type Backend } from './open-backend';
import { parseServiceConfig } from './service-config';

const key = `orch-1:${randomBytes(32).toString('base64')}`;

const workflow = new WorkflowBuilder('cancel_notice')
  .step('reserve', 'cn.reserve', { compensation: 'cn.release' })
  .step('slow', 'cn.slow')
  .build();

async function scenario(backendName: 'redis' | 'nats', server: ServerProcess): Promise<void> {
  const prefix = `cn-${backendName}-${Date.now().toString(36)}`;
  const env = {
    MULTIAGENTS_BACKEND: backendName,
    [backendName === 'redis' ? 'REDIS_URL' : 'NATS_URL']: server.url,
    MULTIAGENTS_PREFIX: prefix,
    MULTIAGENTS_BUS_SIGNING_KEY: key,
    MULTIAGENTS_BUS_VERIFICATION_KEYS: key,
  };
  const opened: Backend[] = [];
  const open = async (): Promise<Backend> => {
    const backend = await openBackend(parseServiceConfig(env, { grpcPort: 0 }), { maintenance: false });
    opened.push(backend);
    return backend;
  };
  const main = await open();
  const side = await open();
  const aborted: string[] = [];
  let started = 0;
  const workers = [
    defineWorker('cn.reserve', () => ({ reserved: true })),
    defineWorker('cn.release', () => ({ released: true })),
    defineWorker(
      'cn.slow',
      (_input, ctx) =>
        new Promise((_resolve, reject) => {
          started += 1;
          ctx.signal.addEventListener('abort', () => {
            const reason = ctx.signal.reason as Error;
            aborted.push(reason.message);
            reject(reason);
          });
        }),
      { timeoutMs: 60_000 },
    ),
  ] as WorkerDefinition<never, unknown>[];
  const orchestrator = new Orchestrator({
    bus: main.bus,
    runs: main.runs,
    definitions: main.definitions,
    registry: main.registry,
    ...main.orchestrator,
  });
  const manager = new WorkerManager({ bus: side.bus, workers, heartbeatIntervalMs: 60_000 });
  try {
    await orchestrator.start();
    await manager.start();
    await orchestrator.registerWorkflow(workflow);
    const { txId } = await orchestrator.startWorkflow('cancel_notice', {});
    await waitFor(() => started === 1, { timeoutMs: 20_000, description: 'the slow handler started' });

    // An unsigned notice naming the live attempt, from someone with access to the broker.
    const attacker = await openBackend(
      {
        backend: backendName,
        ...(backendName === 'redis' ? { redisUrl: server.url } : { natsUrl: server.url }),
        prefix,
        busCodec: { keys: createKeyRing([['orch-1', randomBytes(32)]]) },
      },
      {},
    );
    try {
      const refusedBefore = side.bus.counters?.()['refusedEnvelopes'] ?? 0;
      await attacker.bus.broadcast(Topics.control, [
        makeEnvelope({
          type: EventType.StepCancel,
          txId,
          workflowId: 'cancel_notice',
          payload: { commandIds: [`${txId}:slow:1`], reason: 'forged' },
        }),
      ]);
      await waitFor(() => (side.bus.counters?.()['refusedEnvelopes'] ?? 0) > refusedBefore, {
        timeoutMs: 20_000,
        description: 'the forged notice refused',
      });
    } finally {
      await attacker.close();
    }
    expect(aborted).toEqual([]);
    expect(manager.counters.cancelled).toBe(0);

    await orchestrator.cancel(txId, 'customer asked');
    const run = await orchestrator.waitForTerminal(txId, { timeoutMs: 20_000 });

    expect(run.state).toBe(RunState.Cancelled);
    expect(aborted).toEqual([`attempt ${txId}:slow:1 cancelled: run cancelled`]);
    expect(run.steps['slow']).toMatchObject({ status: 'failed', error: { code: 'CANCELLED' } });
    expect(orchestrator.stats.cancelsBroadcast).toBe(1);
    expect(manager.counters.cancelled).toBe(1);
  } finally {
    await manager.close({ drainTimeoutMs: 1_000 });
    await orchestrator.close();
    for (const backend of opened.reverse()) await backend.close();
  }
}

describe('a cancel reaches the attempt in flight through the broker', () => {
  itOnEachBroker(scenario, 60_000);
});
