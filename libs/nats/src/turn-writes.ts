/**
 * Holds the writes one process makes to its NATS connection during one event-loop turn (stored
 * publishes, acks) and makes them together on the next `setImmediate`, in the order they were
 * added. The client sends what it buffered on the next microtask after its first write into an
 * empty buffer, which under load meant about one socket write per message (18,792 writes for
 * 16,000 transitions in the orchestrator); made together, a turn's messages leave in one. A write
 * handles its own errors: one that throws does not stop the others.
 *
 * @example
 * const writes = new TurnWrites();
 * writes.add(() => connection.publish(subject, data));
 */
export class TurnWrites {
  private queue: Array<() => void> = [];
  private scheduled = false;

  /** Queues `write` for the end of this turn. */
  add(write: () => void): void {
    this.queue.push(write);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Makes every queued write now (before the connection is drained, say). */
  readonly flush = (): void => {
    this.scheduled = false;
    const writes = this.queue;
    this.queue = [];
    for (const write of writes) {
      try {
        write();
      } catch {
        // Each write reports its own failure; none may stop the rest.
      }
    }
  };
}
