// An agent hosted by a WorkerManager on the in-memory bus, against the fake server over loopback.
import { MemoryEventBus } from '@multiagents/memory';
import {
  ErrorCode,
  EventType,
  Topics,
  type Envelope,
  type StepProgressPayload,
  type StepResultPayload,
} from '@multiagents/contracts';
import type { Subscription } from '@multiagents/core';
import { waitFor } from '@multiagents/testing';
import { WorkerManager, type WorkerManagerOptions } from '@multiagents/worker-sdk';
import { MemoryAgentMemo, type AgentMemo } from './agent-memo';
import type { AgentResult } from './agent-result';
import { defineAgent, type AgentDefinition, type AgentOptions } from './define-agent';
import { agentCommand, closeTestLlms, startTestLlm } from './testing/agent-fixture';

const AGENT = 'research.answer';

let bus: MemoryEventBus;
let managers: WorkerManager[];
let observers: Subscription[];

beforeEach(() => {
  bus = new MemoryEventBus();
  managers = [];
  observers = [];
});

afterEach(async () => {
  await Promise.all(managers.map((m) => m.close({ drainTimeoutMs: 0 })));
  await Promise.all(observers.map((s) => s.close()));
  await bus.close();
  await closeTestLlms();
});

/** What a watcher or an orchestrator reads from a topic, in its own consumer group. */
async function observe<P>(topic: string): Promise<Envelope<P>[]> {
  const seen: Envelope<P>[] = [];
  observers.push(
    await bus.subscribe(topic, { group: `observer-${topic}`, consumer: 'test' }, async (delivery) => {
      seen.push(delivery.envelope as Envelope<P>);
    }),
  );
  return seen;
}

async function host(
  agent: AgentDefinition,
  options: Partial<WorkerManagerOptions> = {},
): Promise<WorkerManager> {
  const manager = new WorkerManager({
    bus,
    workers: [agent],
    subscribe: { retryDelayMs: 10, visibilityTimeoutMs: 5_000 },
    heartbeatIntervalMs: 60_000,
    ...options,
  });
  managers.push(manager);
  await manager.start();
  return manager;
}

function researcher(model: AgentOptions['model'], memo: AgentMemo, extra: Partial<AgentOptions> = {}) {
  return defineAgent(AGENT, {
    signature: 'question:string -> answer:string, sources:string[]',
    model,
    memo,
    ...extra,
  });
}

const ANSWER = 'Paris, on the Seine, has been the capital of France for more than a thousand years.';

describe('an agent hosted by a WorkerManager', () => {
  it('publishes its result as the step output, and its token deltas as step.progress events', async () => {
    const results = await observe<StepResultPayload>(Topics.results);
    const events = await observe<StepProgressPayload>(Topics.events);
    const { server, model } = await startTestLlm([
      { fields: { answer: ANSWER, sources: ['atlas'] }, chunkChars: 3 },
    ]);
    await host(researcher(model, new MemoryAgentMemo()));
    await bus.publish(Topics.command(AGENT), [agentCommand(AGENT, { question: 'Capital of France?' })]);

    await waitFor(() => results.length === 1, { description: 'the step result' });
    const payload = results[0]!.payload;
    expect(payload).toMatchObject({ commandId: 'tx-1:answer:1', worker: AGENT, ok: true });
    const output = (payload as { output: AgentResult }).output;
    expect(output).toMatchObject({
      agent: AGENT,
      answer: { answer: ANSWER, sources: ['atlas'] },
      model: 'fake-model',
      usage: { modelCalls: 1 },
    });
    expect(server.calls).toBe(1);

    const progress = () => events.filter((e) => e.type === EventType.StepProgress);
    const streamed = () => progress().map((e) => e.payload.deltas?.['answer'] ?? '');
    await waitFor(() => streamed().join('') === ANSWER, { description: 'every delta as step.progress' });
    expect(progress()[0]).toMatchObject({ txId: 'tx-1', step: 'answer', attempt: 1, payload: { seq: 1 } });
    expect(progress().map((e) => e.payload.seq)).toEqual(progress().map((_, i) => i + 1));
  });

  it('does not call the model again when the command is redelivered after a replica died holding the answer', async () => {
    const results = await observe<StepResultPayload>(Topics.results);
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris', sources: ['atlas'] } }]);
    const memo = new MemoryAgentMemo();
    // The first replica stalls right after recording the answer, then is shut down: no result
    // goes out and the command is not acknowledged, as when a process dies at that moment.
    let stored = false;
    let release: () => void = () => undefined;
    const stalling: AgentMemo = {
      get: (key) => memo.get(key),
      put: async (key, record) => {
        const kept = await memo.put(key, record);
        stored = true;
        await new Promise<void>((resolve) => (release = resolve));
        return kept;
      },
    };
    const first = await host(researcher(model, stalling), { managerId: 'wm-first' });
    await bus.publish(Topics.command(AGENT), [agentCommand(AGENT, { question: 'Capital of France?' })]);
    await waitFor(() => stored, { description: 'the answer recorded by the first replica' });
    await first.close({ drainTimeoutMs: 0 });
    expect(results).toEqual([]);
    expect(server.calls).toBe(1);

    const second = await host(researcher(model, memo), { managerId: 'wm-second' });
    await waitFor(() => results.length === 1, { description: 'the redelivered command’s result' });
    release();
    expect(second.counters).toEqual({
      delivered: 1,
      redelivered: 1,
      resultPublishRetries: 0,
      local: 0,
      cancelled: 0,
      refusedCancelNotices: 0,
    });
    expect(results[0]!.payload).toMatchObject({ ok: true, output: { answer: { answer: 'Paris' } } });
    // Zero model calls for the redelivery: the answer was paid for once.
    expect(server.calls).toBe(1);
  });

  it('returns the recorded answer to a retry of the same step (another attempt, same idempotency key)', async () => {
    const results = await observe<StepResultPayload>(Topics.results);
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris', sources: [] } }]);
    await host(researcher(model, new MemoryAgentMemo()));
    await bus.publish(Topics.command(AGENT), [agentCommand(AGENT, { question: 'Q?' }, { attempt: 1 })]);
    await waitFor(() => results.length === 1, { description: 'the first result' });
    await bus.publish(Topics.command(AGENT), [agentCommand(AGENT, { question: 'Q?' }, { attempt: 2 })]);
    await waitFor(() => results.length === 2, { description: 'the second result' });

    expect(server.calls).toBe(1);
    const outputs = results.map((r) => (r.payload as { output: unknown }).output);
    expect(outputs[1]).toEqual(outputs[0]);
  });

  it('times out per the step’s timeoutMs against a hung provider, retryably, and drops the connection', async () => {
    const results = await observe<StepResultPayload>(Topics.results);
    const { server, model } = await startTestLlm([{ hang: 'before-response' }]);
    await host(researcher(model, new MemoryAgentMemo()));
    const command = agentCommand(AGENT, { question: 'Q?' });
    await bus.publish(Topics.command(AGENT), [
      { ...command, payload: { ...command.payload, timeoutMs: 300 } },
    ]);

    await waitFor(() => results.length === 1, { description: 'the timed-out result' });
    expect(results[0]!.payload).toMatchObject({
      ok: false,
      error: { code: ErrorCode.Timeout, retryable: true },
    });
    await waitFor(() => server.abandoned === 1, { description: 'the model call abandoned' });
  });

  it('publishes a malformed answer as a retryable AGENT_BAD_ANSWER with the raw text for the operator', async () => {
    const results = await observe<StepResultPayload>(Topics.results);
    const { model } = await startTestLlm([{ text: 'Paris, obviously.' }]);
    await host(researcher(model, new MemoryAgentMemo()));
    await bus.publish(Topics.command(AGENT), [agentCommand(AGENT, { question: 'Q?' })]);

    await waitFor(() => results.length === 1, { description: 'the result' });
    expect(results[0]!.payload).toMatchObject({
      ok: false,
      error: { code: 'AGENT_BAD_ANSWER', retryable: true, details: { raw: 'Paris, obviously.' } },
    });
  });
});
