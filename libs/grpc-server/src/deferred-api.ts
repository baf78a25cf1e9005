import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';

/** An API whose implementation is handed over later; see {@link deferredApi}. */
export interface DeferredApi<T extends object> {
  /** Forwards methods and properties to the bound implementation; throws UNAVAILABLE until there is one. */
  readonly api: T;
  /** Hands over the implementation: calls from now on reach it. */
  bind(implementation: T): void;
}

/**
 * Lets a service listen before what it serves exists: a process waiting for its broker binds its
 * port and answers health NOT_SERVING, and a call that comes meanwhile fails with UNAVAILABLE
 * (retryable) saying why, instead of finding no server at all.
 *
 * @example
 * const orchestrator = deferredApi<OrchestratorApi>('the orchestrator is waiting for its broker');
 * const grpc = new ControlPlaneServer({ orchestrator: orchestrator.api });
 * await grpc.start({ serving: false });
 * orchestrator.bind(new Orchestrator({ ...await openBackend(config) }));
 */
export function deferredApi<T extends object>(whileUnbound: string): DeferredApi<T> {
  let bound: T | undefined;
  const api = new Proxy({} as T, {
    get(_, property) {
      // Not part of any API: what `await`, inspection and conversions look for.
      if (typeof property === 'symbol' || property === 'then') return undefined;
      // Thrown at access: methods, synchronous ones (subscriptions) and properties fail alike.
      if (bound === undefined)
        throw new MultiAgentsError(ErrorCode.Unavailable, whileUnbound, { retryable: true });
      const value: unknown = Reflect.get(bound, property);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(bound) : value;
    },
  });
  return {
    api,
    bind(implementation) {
      bound = implementation;
    },
  };
}
