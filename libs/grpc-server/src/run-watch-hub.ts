import type { Run } from '@multiagents/contracts';

/** What the hub needs from the orchestrator: its change feeds, and reading a run. */
export interface RunChangeSource {
  /** The runs this process writes. */
  onRunChanged(listener: (run: Run) => void): () => void;
  /**
   * The ids of the runs other processes move (optional: without it, their changes are polled);
   * `opened` once the feed has opened (what moved while it opened was not announced).
   */
  onRunMoved?(listener: (txId: string) => void, opened?: () => void): () => void;
  getRun(txId: string): Promise<Run>;
}

/**
 * Fans the orchestrator's change feeds out to watchers by transaction id. It holds listeners on
 * the orchestrator only while someone watches (subscribed with the first watcher, released with
 * the last), and dispatches each change to that run's watchers only, so many open WatchWorkflow
 * streams cost one map lookup per change instead of one callback each. A watched run that some
 * process moved (another orchestrator, with several replicas) is read again and dispatched; the
 * streams drop what they have seen already.
 */
export class RunWatchHub {
  private readonly watchers = new Map<string, Set<(run: Run) => void>>();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly source: RunChangeSource) {}

  /** Calls `listener` with every change of run `txId`; returns the function that stops it. */
  watch(txId: string, listener: (run: Run) => void): () => void {
    this.unsubscribe ??= this.subscribe();
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

  private subscribe(): () => void {
    const changed = this.source.onRunChanged((run) => this.dispatch(run));
    const moved = this.source.onRunMoved?.(
      (txId) => {
        if (this.watchers.has(txId)) this.reread(txId);
      },
      // A watch opened with the feed read its run before the feed started: read it again.
      () => {
        for (const txId of this.watchers.keys()) this.reread(txId);
      },
    );
    return () => {
      changed();
      moved?.();
    };
  }

  private reread(txId: string): void {
    // Read failures are left to the streams' own polling.
    this.source.getRun(txId).then(
      (run) => this.dispatch(run),
      () => undefined,
    );
  }

  private dispatch(run: Run): void {
    const set = this.watchers.get(run.txId);
    if (set === undefined) return;
    // A listener may unsubscribe while we iterate (its run just ended): iterate a copy.
    for (const listener of [...set]) listener(run);
  }
}
