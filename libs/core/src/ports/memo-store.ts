import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';

/**
 * Records written once per key, read back by later deliveries of the same work: what makes an
 * expensive, non-repeatable call (an LLM answer, a payment provider's reply) happen once per
 * idempotency key although its command may be delivered several times. Every backend has one
 * (`backend.memo`) on the service's own broker; worker modules get it through
 * `createWorkers({ memo })`. An agent's `AgentMemo` is this contract with agent results as records,
 * so any MemoStore is an AgentMemo.
 *
 * Contract, for every implementation (one conformance suite in libs/testing checks it):
 * - `get(key)` resolves the record stored under `key`, or `undefined` when there is none.
 * - `put(key, record)` stores `record` only if `key` has no record yet (put-if-absent, atomically),
 *   and resolves the record stored under `key` afterwards: the earlier one when there was one.
 *   First writer wins, so two attempts racing on one key agree on one record.
 * - Records are JSON data; a store returns data equal to what was put, not the same object.
 * - A record lives at least as long as the backend keeps a finished run (its retention).
 * - Both methods reject when the store cannot answer (down, closed), and `get` rejects with
 *   {@link MemoRecordCorruptError} when what is stored is not JSON (corrupted or forged): they
 *   never resolve `undefined` for "I do not know".
 *
 * The type parameter is what the caller expects to read back; the store does not check shapes
 * (an agent checks its records itself).
 */
export interface MemoStore {
  get<T = unknown>(key: string): Promise<T | undefined>;
  put<T>(key: string, record: T): Promise<T>;
}

/** What a memo store holds under `key` is not a JSON record: corrupted, or written by someone else. */
export class MemoRecordCorruptError extends MultiAgentsError {
  constructor(
    readonly key: string,
    readonly store: string,
    cause: unknown,
  ) {
    super(
      ErrorCode.Internal,
      `${store}: the memo record under "${key}" is not valid JSON (corrupted or written by someone ` +
        `else); delete it to let the work run again`,
      { cause, retryable: false, details: { key, store } },
    );
  }
}

/** Parses a stored memo record, or throws {@link MemoRecordCorruptError} naming the key and store. */
export function decodeMemoRecord<T>(text: string, key: string, store: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new MemoRecordCorruptError(key, store, err);
  }
}

/**
 * The JSON text of a record. Refuses what JSON cannot carry (`undefined`, a function, a cycle, a
 * BigInt) before anything is written.
 */
export function encodeMemoRecord(record: unknown, key: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(record);
  } catch (err) {
    throw new MultiAgentsError(ErrorCode.InvalidArgument, `memo record for "${key}" is not JSON data`, {
      cause: err,
      retryable: false,
      details: { key },
    });
  }
  if (text === undefined) {
    throw new MultiAgentsError(ErrorCode.InvalidArgument, `memo record for "${key}" is not JSON data`, {
      retryable: false,
      details: { key },
    });
  }
  return text;
}
