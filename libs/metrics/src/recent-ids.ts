import { LruMap } from '@multiagents/core';

/**
 * The last `capacity` message ids seen, oldest forgotten first: a message delivered again (its
 * ack was lost, or it was published twice under the same id) is recognised and not counted twice.
 */
export class RecentIds {
  private readonly ids: LruMap<string, true>;

  constructor(capacity: number) {
    this.ids = new LruMap(capacity);
  }

  /** True if `id` was seen already; otherwise remembers it and returns false. */
  seen(id: string): boolean {
    if (this.ids.get(id) !== undefined) return true;
    this.ids.set(id, true);
    return false;
  }

  /** Forgets `id` (its handling failed, so a redelivery must be handled). */
  forget(id: string): void {
    this.ids.delete(id);
  }
}
