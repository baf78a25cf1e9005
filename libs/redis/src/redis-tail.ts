import { decodeEnvelope, toErrorInfo } from '@multiagents/contracts';
import { handToTail, type Subscription, type TailHandler } from '@multiagents/core';
import type { RedisClient } from './redis-backend-options';
import type { RedisConnection } from './redis-connection';
import type { TopicStream } from './redis-keys';
import { loopBackoffMs } from './redis-subscription';
import { parseReadGroupReply } from './stream-replies';

/** Entries one read takes per stream. */
const TAIL_BATCH = 256;

/** One blocking reader and the streams its XREAD covers, with the last entry id seen of each. */
interface TailLane {
  readonly reader: RedisClient;
  readonly keys: readonly string[];
  readonly lastIds: string[];
}

/**
 * A live feed of one topic ({@link EventBus.tail}): a plain XREAD of every partition's stream
 * after the entry ids last seen, so the server keeps nothing for it (no group, no pending list)
 * and a feed whose connection dropped resumes after the last entry it saw. One blocking reader
 * per lane, as subscriptions have: one for all partitions on a single server, one per partition
 * on Redis Cluster.
 */
export class RedisTail implements Subscription {
  private closed = false;
  private readonly loops: Promise<void>[];
  private readonly pauses = new Set<() => void>();

  private constructor(
    private readonly connection: RedisConnection,
    private readonly topic: string,
    private readonly lanes: readonly TailLane[],
    private readonly handler: TailHandler,
    private readonly detach: (tail: RedisTail) => void,
  ) {
    this.loops = lanes.map((lane) => this.readLoop(lane));
  }

  /** Starts a feed at the newest entry of each stream (its id read first, so no entry after it is missed). */
  static async open(
    connection: RedisConnection,
    topic: string,
    streams: readonly TopicStream[],
    handler: TailHandler,
    detach: (tail: RedisTail) => void,
  ): Promise<RedisTail> {
    const newest = await connection.call(`tail ${topic}`, () =>
      Promise.all(
        streams.map(async (source) => {
          const last = await connection.client.xrevrange(source.stream, '+', '-', 'COUNT', 1);
          return last[0]?.[0] ?? '0-0';
        }),
      ),
    );
    const laneStreams = connection.cluster ? streams.map((_, i) => [i]) : [streams.map((_, i) => i)];
    const lanes = laneStreams.map((indexes) => ({
      reader: connection.openReader(),
      keys: indexes.map((i) => (streams[i] as TopicStream).stream),
      lastIds: indexes.map((i) => newest[i] as string),
    }));
    return new RedisTail(connection, topic, lanes, handler, detach);
  }

  /** Stops reading (a blocked read is cut off with its connection). Idempotent. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const wake of this.pauses) wake();
      for (const lane of this.lanes) this.connection.closeReader(lane.reader);
    }
    await Promise.all(this.loops);
    this.detach(this);
  }

  private async readLoop(lane: TailLane): Promise<void> {
    const { options } = this.connection;
    let failures = 0;
    while (!this.closed) {
      let reply: unknown;
      try {
        reply = await lane.reader.callBuffer(
          'XREAD',
          'COUNT',
          TAIL_BATCH,
          'BLOCK',
          options.blockMs,
          'STREAMS',
          ...lane.keys,
          ...lane.lastIds,
        );
        failures = 0;
      } catch (err) {
        if (this.closed) break;
        failures += 1;
        this.connection.logger.warn(
          { topic: this.topic, err: toErrorInfo(err).message },
          'redis tail read failed',
        );
        await this.pause(loopBackoffMs(failures));
        continue;
      }
      for (const entry of parseReadGroupReply(reply)) {
        const at = lane.keys.indexOf(entry.stream);
        if (at >= 0) lane.lastIds[at] = entry.id;
        if (this.closed) break;
        // A replayed dead letter (it names its group) is not news: the feed had it when published.
        if (entry.group === undefined) this.hand(entry.data);
      }
    }
  }

  private hand(data: Buffer | undefined): void {
    const { counters, options, logger } = this.connection;
    handToTail(
      () => {
        if (data === undefined) throw new Error("stream entry has no 'd' field");
        return decodeEnvelope(data, options.codec);
      },
      this.handler,
      () => (counters.refusedEnvelopes += 1),
      (err) => logger.warn({ topic: this.topic, err: toErrorInfo(err).message }, 'a tail handler threw'),
    );
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.pauses.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      this.pauses.add(wake);
    });
  }
}
