interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

interface Pending<Item> {
  readonly items: Item[];
  weight: number;
  readonly waiters: Waiter[];
}

/** What a {@link TurnBatcher} does with a batch. */
export interface TurnBatcherOptions<Item> {
  /** Sends one slot's batch as one call (a script, a pipeline). */
  readonly send: (slot: string, items: readonly Item[]) => Promise<void>;
  /** The error every caller of a failed batch gets. */
  readonly failure: (slot: string, err: unknown) => unknown;
  /** How much of a call an item takes (commands, script operations). */
  readonly weight: (item: Item) => number;
  /** Most weight one call carries: a batch that would pass it is sent as it is and a new one begun. */
  readonly maxWeight: number;
}

/**
 * Collects what one process writes during one event-loop turn, per slot (a Redis Cluster hash
 * tag: everything one call touches must share it), and sends each slot's batch as one call on the
 * next `setImmediate`. Every `add` resolves once its batch is applied, or rejects with the batch's
 * error. Within one slot, order is kept: batches are sent in the order they were filled, on one
 * connection. One call per slot and turn instead of one per item saves a socket write and a round
 * trip each, in this process and in Redis.
 */
export class TurnBatcher<Item> {
  private readonly open = new Map<string, Pending<Item>>();
  private readonly ready: Array<[string, Pending<Item>]> = [];
  private scheduled = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly options: TurnBatcherOptions<Item>) {}

  /** Queues `item` for `slot`; resolves once Redis has applied its batch. */
  add(slot: string, item: Item): Promise<void> {
    const weight = this.options.weight(item);
    let batch = this.open.get(slot);
    if (batch !== undefined && batch.weight > 0 && batch.weight + weight > this.options.maxWeight) {
      this.ready.push([slot, batch]);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { items: [], weight: 0, waiters: [] };
      this.open.set(slot, batch);
    }
    batch.items.push(item);
    batch.weight += weight;
    const waiters = batch.waiters;
    const done = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
    return done;
  }

  /** Sends what is queued now and waits until everything sent so far is answered. */
  async drain(): Promise<void> {
    if (this.scheduled) this.flush();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** `send`, with a synchronous throw turned into a rejection (the other batches still go). */
  private async call(slot: string, items: readonly Item[]): Promise<void> {
    await this.options.send(slot, items);
  }

  private readonly flush = (): void => {
    if (!this.scheduled) return;
    this.scheduled = false;
    const batches = this.ready.splice(0);
    for (const entry of this.open) batches.push(entry);
    this.open.clear();
    for (const [slot, batch] of batches) {
      const sent = this.call(slot, batch.items).then(
        () => {
          for (const waiter of batch.waiters) waiter.resolve();
        },
        (err: unknown) => {
          let error = err;
          try {
            error = this.options.failure(slot, err);
          } catch {
            // The error as it came.
          }
          for (const waiter of batch.waiters) waiter.reject(error);
        },
      );
      this.inFlight.add(sent);
      void sent.finally(() => this.inFlight.delete(sent));
    }
  };
}
