import {
  EventType,
  StepStatus,
  Topics,
  decodeEnvelope,
  type Envelope,
  type Run,
} from '@multiagents/contracts';
import type { Timer, Transition } from '@multiagents/core';
import { makeRun } from '@multiagents/testing';
import type { Redis } from 'ioredis';
import type { RedisConnection } from '../redis-connection';

/** The worker the test transitions command. */
export const TEST_WORKER = 'test.work';

/**
 * Transition number `k` (1 = create) of a run in a recognisable shape: its header's `updatedAt`
 * is `createdAt + k`, and it writes step record `s<k>`, sends command `<txId>:c<k>`, event
 * `<txId>:v<k>`, schedules timer `<txId>:retry:s:<k>` and cancels timer `k - 1`. What a store
 * holds after a crash then says exactly which transitions landed, whole or not.
 */
export function numberedTransition(base: Run, k: number, extra: Partial<Transition> = {}): Transition {
  const run: Run = {
    ...base,
    updatedAt: base.createdAt + k,
    steps: {
      ...base.steps,
      [`s${k}`]: { name: `s${k}`, status: StepStatus.Completed, attempt: 1, attempts: [], output: { k } },
    },
  };
  const txId = run.txId;
  const command: Envelope<{
    commandId: string;
    worker: string;
    input: unknown;
    idempotencyKey: string;
    compensation: boolean;
  }> = {
    id: `${txId}:c${k}`,
    type: EventType.StepCommand,
    txId,
    workflowId: run.workflowId,
    step: `s${k}`,
    attempt: 1,
    time: run.updatedAt,
    headers: {},
    payload: {
      commandId: `${txId}:c${k}`,
      worker: TEST_WORKER,
      input: { k },
      idempotencyKey: `${txId}:s${k}`,
      compensation: false,
    },
  };
  const timer = (n: number): Timer => ({
    id: `${txId}:retry:s:${n}`,
    txId,
    dueAt: run.createdAt + 1_000 + n,
    payload: { kind: 'retry', step: 's', attempt: n },
  });
  return {
    run,
    changedSteps: [`s${k}`],
    commands: [command],
    event: {
      id: `${txId}:v${k}`,
      type: EventType.WorkflowTransitioned,
      txId,
      workflowId: run.workflowId,
      time: run.updatedAt,
      headers: {},
      payload: { version: k, state: run.state, events: [] },
    },
    schedule: [timer(k)],
    cancel: k > 1 ? [timer(k - 1).id] : [],
    ...extra,
  };
}

/** A fresh run for {@link numberedTransition}. */
export function numberedRun(): Run {
  return makeRun({ steps: {}, context: {} });
}

/** What the streams and timers of `connection`'s prefix hold, by txId (read raw, every partition). */
export async function readEffects(
  client: Redis,
  connection: RedisConnection,
): Promise<{
  commands: Map<string, string[]>;
  events: Map<string, string[]>;
  timers: Map<string, string[]>;
}> {
  const { keys } = connection;
  const commands = new Map<string, string[]>();
  const events = new Map<string, string[]>();
  const timers = new Map<string, string[]>();
  const push = (map: Map<string, string[]>, txId: string, id: string): void => {
    map.set(txId, [...(map.get(txId) ?? []), id]);
  };
  for (let p = 0; p < keys.partitions; p += 1) {
    for (const [topic, map] of [
      [Topics.command(TEST_WORKER), commands],
      [Topics.events, events],
    ] as const) {
      const entries = (await client.xrangeBuffer(keys.stream(p, topic), '-', '+')) as unknown as Array<
        [Buffer, Buffer[]]
      >;
      for (const [, fields] of entries) {
        const envelope = decodeEnvelope(fields[1] as Buffer);
        push(map, envelope.txId, envelope.id);
      }
    }
    for (const id of await client.zrange(keys.timers(p), '0', '-1'))
      push(timers, id.split(':')[0] as string, id);
  }
  return { commands, events, timers };
}
