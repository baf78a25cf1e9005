import type { Clock, DefinitionStore, Logger } from '@multiagents/core';
import type { LabelBounds } from './label-bounds';

/**
 * Feeds {@link LabelBounds} from the registered definitions: every version once (definitions are
 * immutable), again on a schedule and when an event names a workflow the bounds do not know yet
 * (at most once per `minIntervalMs`, so a flood of forged workflow ids costs one read a second).
 */
export class DefinitionCatalog {
  private readonly loaded = new Set<string>();
  private refreshing: Promise<void> | undefined;
  private lastRefreshAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly store: Pick<DefinitionStore, 'list' | 'get'>,
    private readonly bounds: LabelBounds,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly minIntervalMs: number,
  ) {}

  /** Reads the definitions now (concurrent callers share one read); a failure is logged, not thrown. */
  refresh(): Promise<void> {
    this.refreshing ??= this.load().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /**
   * Learns `workflowId` if it can be known for an event made at `eventTime`: a definition is
   * registered before its runs start, so a read that began after the event knows it if anyone
   * does; such a read is made (shared with concurrent callers) when the last one began earlier.
   * Otherwise (the workflow is unknown for real) at most one read per `minIntervalMs`.
   */
  async ensure(workflowId: string, eventTime: number = Number.NEGATIVE_INFINITY): Promise<void> {
    if (this.bounds.knowsWorkflow(workflowId) || this.bounds.workflowsFull) return;
    const madeAt = Math.min(eventTime, this.clock.now());
    // Two rounds at most: one already running may have begun before the event. A read that began
    // in the event's millisecond may have begun before it too (the clock counts milliseconds).
    for (let round = 0; round < 2 && this.lastRefreshAt <= madeAt; round += 1) {
      await this.refresh();
      if (this.bounds.knowsWorkflow(workflowId)) return;
    }
    if (this.refreshing !== undefined) return this.refreshing;
    if (this.clock.now() - this.lastRefreshAt < this.minIntervalMs) return;
    return this.refresh();
  }

  private async load(): Promise<void> {
    this.lastRefreshAt = this.clock.now();
    try {
      const summaries = await this.store.list();
      for (const summary of summaries) {
        for (const version of summary.versions) {
          const key = `${summary.id}@${version}`;
          if (this.loaded.has(key)) continue;
          const definition = await this.store.get(summary.id, version);
          if (definition !== undefined) this.bounds.learn(definition);
          this.loaded.add(key);
        }
      }
    } catch (err) {
      this.logger.warn(
        { component: 'metrics', err: err instanceof Error ? err.message : String(err) },
        'could not read the workflow definitions; unknown names are labelled other',
      );
    }
  }
}
