/**
 * The last `capacity` message ids seen, oldest forgotten first: a message delivered again (its
 * ack was lost, or it was published twice under the same id) is recognised and not counted twice.
 */
export class RecentIds {
  private readonly ids = new Set<string>();

  constructor(private readonly capacity: number) {}

  /** True if `id` was seen already; otherwise remembers it and returns false. */
  seen(id: string): boolean {
    if (this.ids.has(id)) return true;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next();
      if (oldest.done !== true) this.ids.delete(oldest.value);
    }
    return false;
  }

  /** Forgets `id` (its handling failed, so a redelivery must be handled). */
  forget(id: string): void {
    this.ids.delete(id);
  }
}
