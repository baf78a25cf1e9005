import type { Envelope } from '@multiagents/contracts';
import type { Delivery } from '@multiagents/core';
import type { RedisConnection } from './redis-connection';
import type { TopicStream } from './redis-keys';

/**
 * One delivery of one stream entry to one consumer of a group. Besides the port's fields it
 * knows where the entry is (stream, partition, entry id) and whose it is (group, consumer,
 * delivery count), so that the run store can acknowledge it inside a transition and the bus can
 * acknowledge a command together with the result that answers it.
 */
export class RedisDelivery implements Delivery {
  /**
   * Set once the entry's fate is decided by this delivery: acknowledged (by a commit, with a
   * result, or by the handler's outcome) or scheduled again. The subscription settles nothing
   * twice: a commit that acknowledged the entry makes the handler's later outcome moot.
   */
  settled = false;

  constructor(
    readonly id: string,
    readonly topic: string,
    readonly envelope: Envelope,
    readonly deliveryCount: number,
    readonly source: TopicStream,
    readonly entryId: string,
    readonly group: string,
    readonly consumer: string,
    /** The connection of the bus that delivered it: only its own store may acknowledge it. */
    readonly connection: RedisConnection,
    // An arrow property, not a method: handlers pass `delivery.extend` around unbound.
    readonly extend: () => Promise<void>,
  ) {}
}

/** The public id of an entry: `<partition>:<entry id>` on a partitioned topic, else the entry id. */
export function deliveryId(source: TopicStream, entryId: string): string {
  return source.partition === undefined ? entryId : `${source.partition}:${entryId}`;
}

/** The partition and entry id inside an id made by {@link deliveryId}; undefined if it is not one. */
export function parseDeliveryId(id: string): { partition: number | undefined; entryId: string } | undefined {
  const match = /^(?:(\d+):)?(\d+-\d+)$/.exec(id);
  if (match === null) return undefined;
  return { partition: match[1] === undefined ? undefined : Number(match[1]), entryId: match[2] as string };
}
