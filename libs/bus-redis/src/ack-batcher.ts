/** Default of {@link AckBatcher}'s `maxBatch`: pairs per script call (Lua's unpack has a stack limit). */
export const DEFAULT_ACK_BATCH_MAX = 500;

/**
 * Collects the acknowledgements of one subscription during one event-loop turn and sends them as
 * one `ack.lua` call (many XACKs in one round trip) on the next `setImmediate`. Failures are
 * reported to `onError`: an ack that never arrives only means the entry is delivered again after
 * its visibility timeout (at-least-once), so nothing is retried here.
 */
export class AckBatcher {
  private ids: string[] = [];
  private counts: number[] = [];
  private scheduled = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly send: (pairs: Array<string | number>) => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
    private readonly maxBatch: number = DEFAULT_ACK_BATCH_MAX,
  ) {}

  /** Queues the ack of delivery `deliveryCount` of entry `id`. */
  add(id: string, deliveryCount: number): void {
    this.ids.push(id);
    this.counts.push(deliveryCount);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Sends what is queued now and waits until every ack sent so far is answered. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const ids = this.ids;
    const counts = this.counts;
    if (ids.length === 0) return;
    this.ids = [];
    this.counts = [];
    for (let start = 0; start < ids.length; start += this.maxBatch) {
      const pairs: Array<string | number> = [];
      const end = Math.min(ids.length, start + this.maxBatch);
      for (let i = start; i < end; i += 1) pairs.push(ids[i] as string, counts[i] as number);
      const sent: Promise<void> = this.send(pairs).then(
        () => undefined,
        (err: unknown) => this.onError(err),
      );
      this.inFlight.add(sent);
      void sent.finally(() => this.inFlight.delete(sent));
    }
  };
}
