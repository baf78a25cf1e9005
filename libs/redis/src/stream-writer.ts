import type { RedisConnection } from './redis-connection';
import type { ScriptArg } from './scripts';

/** One entry to append to a stream (field `d`). */
export interface StreamAppend {
  readonly stream: string;
  /** Approximate cap of the stream (XADD MAXLEN ~), when it has one. */
  readonly maxLen?: number;
  readonly data: Buffer;
}

/** One guarded acknowledgement: of delivery `deliveryCount` of `entryId`, by `consumer` of `group`. */
export interface StreamAck {
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  readonly entryId: string;
  readonly deliveryCount: number;
}

/** Operations per script call: keeps ARGV (and Lua's unpack of the acked ids) well below limits. */
const MAX_OPS_PER_CALL = 1_000;

interface AckGroup {
  readonly keyIndex: number;
  readonly group: string;
  readonly consumer: string;
  readonly pairs: ScriptArg[];
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

class Batch {
  readonly keys: string[] = [];
  private readonly keyIndex = new Map<string, number>();
  readonly appends: Array<{ keyIndex: number; maxLen: number | undefined; data: Buffer }> = [];
  readonly acks = new Map<string, AckGroup>();
  ackCount = 0;
  readonly waiters: Waiter[] = [];

  get size(): number {
    return this.appends.length + this.ackCount;
  }

  add(appends: readonly StreamAppend[], acks: readonly StreamAck[]): void {
    for (const append of appends) {
      this.appends.push({ keyIndex: this.key(append.stream), maxLen: append.maxLen, data: append.data });
    }
    for (const ack of acks) {
      const id = `${ack.stream}\n${ack.group}\n${ack.consumer}`;
      let group = this.acks.get(id);
      if (group === undefined) {
        group = { keyIndex: this.key(ack.stream), group: ack.group, consumer: ack.consumer, pairs: [] };
        this.acks.set(id, group);
      }
      group.pairs.push(ack.entryId, ack.deliveryCount);
      this.ackCount += 1;
    }
  }

  private key(stream: string): number {
    let index = this.keyIndex.get(stream);
    if (index === undefined) {
      this.keys.push(stream);
      index = this.keys.length;
      this.keyIndex.set(stream, index);
    }
    return index;
  }
}

/**
 * Sends what one process writes to the bus's streams in one round trip per slot and event-loop
 * turn: the appends of every publish and the acknowledgements of every handler that resolved in
 * this turn are collected per hash tag (a partition, or an unpartitioned topic) and sent on the
 * next `setImmediate`, as plain XADDs when there is nothing to acknowledge, else as one
 * `flush.lua` call (appends first, then acks guarded by owner and delivery count). A worker's
 * result and the acknowledgement of the command it answers therefore reach Redis together.
 * Within one slot, order is kept: one connection, batches sent in the order they were filled.
 */
export class StreamWriter {
  private readonly open = new Map<string, Batch>();
  private readonly ready: Array<[string, Batch]> = [];
  private scheduled = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly connection: RedisConnection) {}

  /** Queues appends and acks for the streams of one slot; resolves once Redis has applied them. */
  write(slot: string, appends: readonly StreamAppend[], acks: readonly StreamAck[]): Promise<void> {
    let batch = this.open.get(slot);
    if (
      batch !== undefined &&
      batch.size > 0 &&
      batch.size + appends.length + acks.length > MAX_OPS_PER_CALL
    ) {
      this.ready.push([slot, batch]);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = new Batch();
      this.open.set(slot, batch);
    }
    batch.add(appends, acks);
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
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

  private readonly flush = (): void => {
    this.scheduled = false;
    const batches = this.ready.splice(0);
    for (const entry of this.open) batches.push(entry);
    this.open.clear();
    for (const [slot, batch] of batches) {
      const sent = this.send(batch).then(
        () => {
          for (const waiter of batch.waiters) waiter.resolve();
        },
        (err: unknown) => {
          const error = this.connection.redisError(`write to ${slot}`, err);
          for (const waiter of batch.waiters) waiter.reject(error);
        },
      );
      this.inFlight.add(sent);
      void sent.finally(() => this.inFlight.delete(sent));
    }
  };

  private async send(batch: Batch): Promise<void> {
    const { client, scripts, counters } = this.connection;
    if (batch.acks.size === 0) {
      if (batch.appends.length === 1) {
        const [append] = batch.appends as [Batch['appends'][number]];
        await client.xadd(batch.keys[append.keyIndex - 1] as string, ...xaddArgs(append.maxLen, append.data));
        return;
      }
      const pipeline = client.pipeline();
      for (const append of batch.appends) {
        pipeline.xadd(batch.keys[append.keyIndex - 1] as string, ...xaddArgs(append.maxLen, append.data));
      }
      const results = await pipeline.exec();
      for (const [err] of results ?? []) if (err) throw err;
      return;
    }
    const args: ScriptArg[] = [batch.appends.length];
    for (const append of batch.appends) args.push(append.keyIndex, append.maxLen ?? '', append.data);
    args.push(batch.acks.size);
    for (const group of batch.acks.values()) {
      args.push(group.keyIndex, group.group, group.consumer, group.pairs.length / 2, ...group.pairs);
    }
    const acked = Number(await scripts.flush(batch.keys, args));
    counters.acked += acked;
    counters.supersededSettles += batch.ackCount - acked;
  }
}

function xaddArgs(maxLen: number | undefined, data: Buffer): Array<string | number | Buffer> {
  return maxLen === undefined ? ['*', 'd', data] : ['MAXLEN', '~', maxLen, '*', 'd', data];
}
