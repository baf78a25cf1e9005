import type { Run } from '@multiagents/contracts';

/** What the hub needs from the orchestrator: its change feed. */
export interface RunChangeSource {
  onRunChanged(listener: (run: Run) => void): () => void;
}

/**
 * Fans the orchestrator's one change feed out to watchers by transaction id. It holds a listener
 * on the orchestrator only while someone watches (subscribed with the first watcher, released
 * with the last), and dispatches each change to that run's watchers only, so many open
 * WatchWorkflow streams cost one map lookup per change instead of one callback each.
 */
export class RunWatchHub {
  private readonly watchers = new Map<string, Set<(run: Run) => void>>();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly source: RunChangeSource) {}

  /** Calls `listener` with every change of run `txId`; returns the function that stops it. */
  watch(txId: string, listener: (run: Run) => void): () => void {
    this.unsubscribe ??= this.source.onRunChanged((run) => this.dispatch(run));
    let set = this.watchers.get(txId);
    if (set === undefined) {
      set = new Set();
      this.watchers.set(txId, set);
    }
    set.add(listener);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      const current = this.watchers.get(txId);
      current?.delete(listener);
      if (current?.size === 0) this.watchers.delete(txId);
      if (this.watchers.size === 0 && this.unsubscribe !== undefined) {
        this.unsubscribe();
        this.unsubscribe = undefined;
      }
    };
  }

  /** Watchers registered now, over all runs (0 once every stream has ended). */
  get size(): number {
    let total = 0;
    for (const set of this.watchers.values()) total += set.size;
    return total;
  }

  private dispatch(run: Run): void {
    const set = this.watchers.get(run.txId);
    if (set === undefined) return;
    // A listener may unsubscribe while we iterate (its run just ended): iterate a copy.
    for (const listener of [...set]) listener(run);
  }
}
