import { Topics, ValidationError, type RunState } from '@multiagents/contracts';

/** Default of {@link RedisKeys}' prefix (SPEC §7, `MULTIAGENTS_PREFIX`). */
export const DEFAULT_REDIS_KEY_PREFIX = 'multiagents';
/** Most partitions a prefix may have (a partition is a Cluster slot: more than nodes × a few is waste). */
export const MAX_PARTITIONS = 1024;

// Redis Cluster hashes only what is between the first `{` and the next `}`. A brace in the prefix
// would move or empty the tag; names after the tag (txIds, topics, workflow ids) may hold anything.
const BRACES = /[{}]/;

/**
 * FNV-1a (32 bits) over the UTF-8 bytes of `text`. Stable across processes, versions and
 * platforms: it decides where a run lives, so it must never change for a given prefix.
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  const bytes = Buffer.from(text, 'utf8');
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Where one topic's messages live in one partition (or, for an unpartitioned topic, at all). */
export interface TopicStream {
  /** The partition index; undefined for an unpartitioned topic. */
  readonly partition: number | undefined;
  /** The hash tag's content: `p<i>`, or `t:<topic>` for an unpartitioned topic. */
  readonly slot: string;
  readonly stream: string;
  readonly dead: string;
}

/**
 * The only place where Redis key names are built. A run belongs to partition
 * `fnv1a32(txId) mod P`; every key of partition `i` carries the hash tag `{p<i>}`, so one Lua
 * script may write all of them together in one Redis Cluster slot, and nothing on a run's path
 * touches a key of another partition or a global key:
 *
 * ```
 * key                                   type    what
 * <prefix>:{p<i>}:run:<txId>            hash    m meta JSON (written once), h header JSON,
 *                                               s:<step> one record per step, v version,
 *                                               r revision token, st state, c createdAt
 * <prefix>:{p<i>}:x:commands.<worker>   stream  step commands for <worker> (field d: protobuf)
 * <prefix>:{p<i>}:x:results             stream  step results and heartbeats
 * <prefix>:{p<i>}:x:events              stream  one workflow.transitioned per transition (MAXLEN ~)
 * <prefix>:{p<i>}:dl:<topic>            stream  dead letters of that topic in this partition
 * <prefix>:{p<i>}:timers                zset    timer id by due time (or claim lease end)
 * <prefix>:{p<i>}:all                   zset    txId by createdAt: every run
 * <prefix>:{p<i>}:st:<state>            zset    txId by createdAt: runs in <state>
 * <prefix>:{p<i>}:wf:<workflowId>       zset    txId by createdAt: runs of <workflowId>
 * <prefix>:{t:<topic>}:x / :dl          stream  any other topic (not partitioned): one stream
 * <prefix>:{p<i>}:tl:<txId>             hash    the run's timeline (event-monitor): "<version>" -> entry JSON
 * <prefix>:{marks}:<key>                string  an event-monitor once-only mark (SET NX PX)
 * <prefix>:{p<i>}:memo:<key>            string  a memo record (JSON, SET NX PX), i = hash(key) mod P
 * <prefix>:{defs}:d:<workflowId>        hash    "<version>" -> canonical JSON, "latest"
 * <prefix>:{defs}:ids                   set     registered workflow ids
 * <prefix>:config                       hash    partitions: P, recorded at first use
 * ```
 *
 * Partitioned topics are the run's own: `commands.<worker>`, `results` and `events` (a publish
 * routes each envelope to the partition of its txId). The transition script builds the listing
 * index names itself from the partition's base (`<prefix>:{p<i>}:`, passed as a key), exactly as
 * {@link RedisKeys.indexState} and {@link RedisKeys.indexWorkflow} do here, so that a write carries
 * only the keys it needs.
 *
 * @example
 * const keys = new RedisKeys('multiagents', 4);
 * keys.run(keys.partitionOf('tx-1'), 'tx-1'); // 'multiagents:{p2}:run:tx-1' (say)
 */
export class RedisKeys {
  readonly prefix: string;
  readonly partitions: number;

  constructor(prefix: string = DEFAULT_REDIS_KEY_PREFIX, partitions = 1) {
    const problems = [...RedisKeys.prefixProblems(prefix), ...RedisKeys.partitionProblems(partitions)];
    if (problems.length > 0) throw new ValidationError('Redis keys', problems);
    this.prefix = prefix;
    this.partitions = partitions;
  }

  /** What is wrong with `prefix` as a key prefix (empty when it is fine). */
  static prefixProblems(prefix: unknown): string[] {
    if (typeof prefix !== 'string' || prefix.length === 0) return ['prefix must be a non-empty string'];
    if (BRACES.test(prefix)) return ['prefix must not contain { or } (they would break the hash tags)'];
    return [];
  }

  /** What is wrong with `partitions` (empty when it is fine). */
  static partitionProblems(partitions: unknown): string[] {
    if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1) {
      return ['partitions must be an integer >= 1'];
    }
    if (partitions > MAX_PARTITIONS) return [`partitions must be at most ${MAX_PARTITIONS}`];
    return [];
  }

  /** The partition a run (and every message about it) belongs to. */
  partitionOf(txId: string): number {
    return this.partitions === 1 ? 0 : fnv1a32(txId) % this.partitions;
  }

  /** True for the topics whose streams are partitioned by txId: commands, results, events. */
  static isPartitioned(topic: string): boolean {
    return topic === Topics.results || topic === Topics.events || topic.startsWith('commands.');
  }

  /** The hash tag of partition `i`. */
  tag(partition: number): string {
    return `{p${partition}}`;
  }

  /** `<prefix>:{p<i>}:`, the start of every key of partition `i` (the scripts build index names from it). */
  base(partition: number): string {
    return `${this.prefix}:{p${partition}}:`;
  }

  /** A run's hash. Throws ValidationError for an empty txId. */
  run(partition: number, txId: string): string {
    return `${this.base(partition)}run:${checkName('txId', txId)}`;
  }

  /** The partition's timers (zset: timer id by due time). */
  timers(partition: number): string {
    return `${this.base(partition)}timers`;
  }

  /** Every run of the partition, by createdAt. */
  indexAll(partition: number): string {
    return `${this.base(partition)}all`;
  }

  /** Runs of the partition in `state`, by createdAt (also built by commit.lua: `base .. 'st:' .. state`). */
  indexState(partition: number, state: RunState): string {
    return `${this.base(partition)}st:${state}`;
  }

  /** Runs of the partition of `workflowId`, by createdAt (also built by commit.lua: `base .. 'wf:' .. id`). */
  indexWorkflow(partition: number, workflowId: string): string {
    return `${this.base(partition)}wf:${checkName('workflowId', workflowId)}`;
  }

  /** The stream of a partitioned topic in partition `i`. */
  stream(partition: number, topic: string): string {
    return `${this.base(partition)}x:${checkName('topic', topic)}`;
  }

  /** The dead letters of a partitioned topic in partition `i`. */
  deadLetters(partition: number, topic: string): string {
    return `${this.base(partition)}dl:${checkName('topic', topic)}`;
  }

  /**
   * Every stream of `topic`: one per partition for a partitioned topic, else the topic's single
   * stream under its own tag `{t:<topic>}`.
   */
  topicStreams(topic: string): TopicStream[] {
    checkName('topic', topic);
    if (!RedisKeys.isPartitioned(topic)) {
      return [
        {
          partition: undefined,
          slot: `t:${topic}`,
          stream: `${this.prefix}:{t:${topic}}:x`,
          dead: `${this.prefix}:{t:${topic}}:dl`,
        },
      ];
    }
    const out: TopicStream[] = [];
    for (let i = 0; i < this.partitions; i += 1) {
      out.push({
        partition: i,
        slot: `p${i}`,
        stream: this.stream(i, topic),
        dead: this.deadLetters(i, topic),
      });
    }
    return out;
  }

  /** Where an envelope about `txId` published on `topic` goes. */
  topicStreamFor(topic: string, txId: string): TopicStream {
    const streams = this.topicStreams(topic);
    if (streams.length === 1) return streams[0] as TopicStream;
    return streams[this.partitionOf(txId)] as TopicStream;
  }

  /** One workflow's registered definitions. */
  definition(workflowId: string): string {
    return `${this.prefix}:{defs}:d:${checkName('workflowId', workflowId)}`;
  }

  /** Registered workflow ids. */
  definitionIds(): string {
    return `${this.prefix}:{defs}:ids`;
  }

  /** The live worker-manager replicas (one hash: replica id → its last announcement). */
  workerRegistry(): string {
    return `${this.prefix}:{workers}:registry`;
  }

  /** A run's timeline, kept by the event-monitor (in the run's partition, beside the run). */
  timeline(txId: string): string {
    return `${this.base(this.partitionOf(txId))}tl:${checkName('txId', txId)}`;
  }

  /** A broadcast channel (pub/sub, see EventBus.broadcast): a channel name, never a key. */
  channel(name: string): string {
    return `${this.prefix}:bc:${checkName('channel', name)}`;
  }

  /** An event-monitor once-only mark. */
  monitorMark(key: string): string {
    return `${this.prefix}:{marks}:${checkName('mark', key)}`;
  }

  /**
   * A memo record (`backend.memo`): in the partition of its key, so records spread over the
   * cluster's slots like runs do. One key per record: every memo command touches one slot.
   */
  memo(key: string): string {
    return `${this.base(this.partitionOf(checkName('memo key', key)))}memo:${key}`;
  }

  /** The prefix's layout (`partitions`), recorded by the first process that uses it. */
  config(): string {
    return `${this.prefix}:config`;
  }
}

/** A name placed after the hash tag: anything but empty (a brace there cannot move the tag). */
function checkName(what: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ValidationError(what, ['must be a non-empty string']);
  }
  return value;
}
