import { LruMap } from '@multiagents/core';
import type { AgentResult } from './agent-result';

/**
 * Where agent answers are recorded, keyed by the step's idempotency key (`ctx.idempotencyKey`), so
 * that a command delivered again (redelivery after a crash, a retry after the answer was stored, a
 * resume after an approval) returns the recorded answer and never pays for the model twice.
 *
 * This is core's `MemoStore` contract with agent results as records, so every backend's memo
 * (`backend.memo`, handed to worker modules as `createWorkers({ memo })`: Redis `SET NX` with a
 * TTL, a NATS KV `create`, memory) is an AgentMemo as it is; {@link MemoryAgentMemo} is a
 * standalone one for examples and tests.
 *
 * Contract, for every implementation (one conformance suite in libs/testing checks the backends'):
 * - `get(key)` resolves the record stored under `key`, or `undefined` when there is none.
 * - `put(key, record)` stores `record` only if `key` has no record yet (put-if-absent, atomically:
 *   `SET NX`, a KV create), and resolves the record stored under `key` afterwards: the earlier one
 *   when there was one. First writer wins, so two attempts racing on one key agree on one answer.
 * - Records are JSON data; a store returns data equal to what was put, not necessarily the object.
 * - A record lives at least as long as its command can be delivered (the run's retention).
 * - Both methods reject when the store cannot answer. They never resolve `undefined` for "I do not
 *   know": an agent that cannot read its memo fails the attempt (retryably) instead of calling the
 *   model without knowing whether it already did.
 */
export interface AgentMemo {
  get(key: string): Promise<AgentResult | undefined>;
  put(key: string, record: AgentResult): Promise<AgentResult>;
}

/** Options of {@link MemoryAgentMemo}. */
export interface MemoryAgentMemoOptions {
  /** Records kept; the oldest is forgotten past it. Default {@link DEFAULT_MEMORY_AGENT_MEMO_MAX_ENTRIES}. */
  readonly maxEntries?: number;
}

/** Default of {@link MemoryAgentMemoOptions.maxEntries}. */
export const DEFAULT_MEMORY_AGENT_MEMO_MAX_ENTRIES = 10_000;

/**
 * An {@link AgentMemo} in this process's memory: for the embedded backend, examples and tests. It
 * survives redeliveries within the process, not a restart. Bounded: past `maxEntries` the oldest
 * record is forgotten, and a late redelivery of its command would call the model again.
 *
 * @example
 * const memo = new MemoryAgentMemo();
 * const agent = defineAgent('research.answer', { signature, model, memo });
 */
export class MemoryAgentMemo implements AgentMemo {
  private readonly records: LruMap<string, string>;

  constructor(options: MemoryAgentMemoOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_MEMORY_AGENT_MEMO_MAX_ENTRIES;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`MemoryAgentMemo: maxEntries must be a positive integer (got ${maxEntries})`);
    }
    this.records = new LruMap(maxEntries);
  }

  /** Records held. */
  get size(): number {
    return this.records.size;
  }

  async get(key: string): Promise<AgentResult | undefined> {
    const text = this.records.get(key);
    return text === undefined ? undefined : (JSON.parse(text) as AgentResult);
  }

  async put(key: string, record: AgentResult): Promise<AgentResult> {
    // Stored as JSON, as a real store would: callers can neither share nor mutate what is kept.
    const existing = this.records.get(key);
    if (existing !== undefined) return JSON.parse(existing) as AgentResult;
    const text = JSON.stringify(record);
    this.records.set(key, text);
    return JSON.parse(text) as AgentResult;
  }
}
