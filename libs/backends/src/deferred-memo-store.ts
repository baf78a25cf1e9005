import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';
import type { MemoStore } from '@multiagents/core';

/**
 * A {@link MemoStore} handed to worker modules before the backend is open (a service loads and
 * checks its modules at start, then waits for its broker): it rejects with UNAVAILABLE (retryable)
 * until {@link bind} gives it the backend's store, then forwards every call to it. No command is
 * taken before the backend is open, so in a service nothing is refused in practice.
 *
 * @example
 * const memo = new DeferredMemoStore('the worker-manager is starting: waiting for its broker');
 * const workers = loadWorkerModules(paths, { memo });
 * // … once the backend is open:
 * memo.bind(backend.memo);
 */
export class DeferredMemoStore implements MemoStore {
  private target: MemoStore | undefined;

  constructor(private readonly whileUnbound = 'the memo store is not open yet: waiting for the broker') {}

  /** Forwards every later call to `store`. */
  bind(store: MemoStore): void {
    this.target = store;
  }

  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.store().then((store) => store.get<T>(key));
  }

  put<T>(key: string, record: T): Promise<T> {
    return this.store().then((store) => store.put<T>(key, record));
  }

  private async store(): Promise<MemoStore> {
    if (this.target === undefined) {
      throw new MultiAgentsError(ErrorCode.Unavailable, this.whileUnbound, { retryable: true });
    }
    return this.target;
  }
}
