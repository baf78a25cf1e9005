import type { RedisConnection } from './redis-connection';
import type { ScriptArg } from './scripts';
import { compareStreamIds } from './stream-replies';
import { TurnBatcher } from './turn-batcher';

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

/** What one caller hands in: its appends and acks, for the streams of one slot. */
interface Write {
  readonly appends: readonly StreamAppend[];
  readonly acks: readonly StreamAck[];
}

interface AckGroup {
  readonly keyIndex: number;
  readonly group: string;
  readonly consumer: string;
  /** The lowest and highest entry ids acknowledged: the range `flush.lua` reads pending entries of. */
  low: string;
  high: string;
  readonly pairs: ScriptArg[];
}

/** One slot's writes, as the arguments of one call: every stream once in `keys`, acks grouped. */
class Batch {
  readonly keys: string[] = [];
  private readonly keyIndex = new Map<string, number>();
  readonly appends: Array<{ keyIndex: number; maxLen: number | undefined; data: Buffer }> = [];
  readonly acks = new Map<string, AckGroup>();
  ackCount = 0;

  constructor(writes: readonly Write[]) {
    for (const write of writes) {
      for (const append of write.appends) {
        this.appends.push({ keyIndex: this.key(append.stream), maxLen: append.maxLen, data: append.data });
      }
      for (const ack of write.acks) {
        const id = `${ack.stream}\n${ack.group}\n${ack.consumer}`;
        let group = this.acks.get(id);
        const entryId = ack.entryId;
        if (group === undefined) {
          group = {
            keyIndex: this.key(ack.stream),
            group: ack.group,
            consumer: ack.consumer,
            low: entryId,
            high: entryId,
            pairs: [],
          };
          this.acks.set(id, group);
        } else if (compareStreamIds(entryId, group.low) < 0) group.low = entryId;
        else if (compareStreamIds(entryId, group.high) > 0) group.high = entryId;
        group.pairs.push(entryId, ack.deliveryCount);
        this.ackCount += 1;
      }
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
 * turn (a {@link TurnBatcher}): the appends of every publish and the acknowledgements of every
 * handler that resolved in this turn are collected per hash tag (a partition, or an unpartitioned
 * topic) and sent as plain XADDs when there is nothing to acknowledge, else as one `flush.lua`
 * call (appends first, then acks guarded by owner and delivery count). A worker's result and the
 * acknowledgement of the command it answers therefore reach Redis together.
 */
export class StreamWriter {
  private readonly batcher: TurnBatcher<Write>;

  constructor(private readonly connection: RedisConnection) {
    this.batcher = new TurnBatcher<Write>({
      send: (_slot, writes) => this.send(new Batch(writes)),
      failure: (slot, err) => connection.redisError(`write to ${slot}`, err),
      weight: (write) => write.appends.length + write.acks.length,
      maxWeight: MAX_OPS_PER_CALL,
    });
  }

  /** Queues appends and acks for the streams of one slot; resolves once Redis has applied them. */
  write(slot: string, appends: readonly StreamAppend[], acks: readonly StreamAck[]): Promise<void> {
    return this.batcher.add(slot, { appends, acks });
  }

  /** Sends what is queued now and waits until everything sent so far is answered. */
  drain(): Promise<void> {
    return this.batcher.drain();
  }

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
      args.push(group.keyIndex, group.group, group.consumer, group.low, group.high, group.pairs.length / 2);
      for (const arg of group.pairs) args.push(arg);
    }
    const acked = Number(await scripts.flush(batch.keys, args));
    counters.acked += acked;
    counters.supersededSettles += batch.ackCount - acked;
  }
}

function xaddArgs(maxLen: number | undefined, data: Buffer): Array<string | number | Buffer> {
  return maxLen === undefined ? ['*', 'd', data] : ['MAXLEN', '~', maxLen, '*', 'd', data];
}
