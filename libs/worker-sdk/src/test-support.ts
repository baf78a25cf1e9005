// Test helpers shared by this package's specs; `test-*.ts` is excluded from the build.
import { EventType, type Envelope, type StepCommandPayload } from '@multiagents/contracts';
import type { Clock, LogFields, Logger } from '@multiagents/core';
import type { StepCommand } from './parse-step-command';

/** A promise with its resolve and reject exposed. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** Makes a {@link Deferred}. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A Clock moved by hand. */
export interface ManualClock extends Clock {
  advance(ms: number): void;
}

/** Makes a {@link ManualClock} starting at `start`. */
export function manualClock(start = 1_000_000): ManualClock {
  let now = start;
  return { now: () => now, advance: (ms) => (now += ms) };
}

/** One line recorded by {@link recordingLogger}. */
export interface LogLine {
  readonly level: string;
  readonly fields: LogFields;
  readonly message: string;
}

/** A Logger that records every line with the bindings of its child chain merged in. */
export function recordingLogger(
  lines: LogLine[] = [],
  bindings: LogFields = {},
): Logger & { lines: LogLine[] } {
  const log = (level: string) => (fields: LogFields, message: string) =>
    void lines.push({ level, fields: { ...bindings, ...fields }, message });
  return {
    lines,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  };
}

/** A valid StepCommandPayload, with overrides. */
export function commandPayload(overrides: Partial<StepCommandPayload> = {}): StepCommandPayload {
  return {
    commandId: 'tx-1:reserve:1',
    worker: 'inventory.reserve',
    input: { sku: 'A-1', quantity: 2 },
    idempotencyKey: 'tx-1:reserve',
    compensation: false,
    ...overrides,
  };
}

/** A valid `step.command` envelope, with overrides of the envelope and of its payload. */
export function commandEnvelope(
  overrides: Partial<Envelope<unknown>> = {},
  payload: Partial<StepCommandPayload> = {},
): Envelope<unknown> {
  const body = commandPayload(payload);
  return {
    id: `${body.commandId}:command`,
    type: EventType.StepCommand,
    txId: 'tx-1',
    workflowId: 'order_processing',
    step: 'reserve',
    attempt: 1,
    time: 1_000_000,
    headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    payload: body,
    ...overrides,
  };
}

/** An already-parsed StepCommand, for WorkerRunner tests. */
export function stepCommand(payload: Partial<StepCommandPayload> = {}, attempt = 1): StepCommand {
  const body = commandPayload(payload);
  return {
    id: `${body.commandId}:command`,
    txId: 'tx-1',
    workflowId: 'order_processing',
    step: 'reserve',
    attempt,
    headers: {},
    payload: body,
  };
}

/** Lets pending promise callbacks run (without timers). */
export async function flushPromises(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** Whether a promise has settled yet, without waiting for it. */
export async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await flushPromises();
  return settled;
}

/** Polls `predicate` with real timers until it holds, or fails after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 2_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Real-time pause (manager tests run against the in-process bus on real timers). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A ScheduleFn driven by a {@link ManualClock}: callbacks run when the test moves time past them. */
export interface ManualScheduler {
  readonly schedule: (callback: () => void, delayMs: number) => () => void;
  /** Callbacks scheduled and not yet run or cancelled. */
  readonly pending: () => number;
  /** Moves the clock forward by `ms`, running each due callback at its own time, in time order. */
  advance(ms: number): Promise<void>;
}

/** Makes a {@link ManualScheduler} over `clock`. */
export function manualScheduler(clock: ManualClock): ManualScheduler {
  let tasks: { at: number; callback: () => void; order: number }[] = [];
  let order = 0;
  return {
    schedule: (callback, delayMs) => {
      const task = { at: clock.now() + Math.max(0, delayMs), callback, order: order++ };
      tasks.push(task);
      return () => void (tasks = tasks.filter((t) => t !== task));
    },
    pending: () => tasks.length,
    advance: async (ms) => {
      const target = clock.now() + ms;
      for (;;) {
        const next = [...tasks].sort((a, b) => a.at - b.at || a.order - b.order)[0];
        if (next === undefined || next.at > target) break;
        tasks = tasks.filter((t) => t !== next);
        clock.advance(next.at - clock.now());
        next.callback();
        await flushPromises();
      }
      clock.advance(target - clock.now());
      await flushPromises();
    },
  };
}
