import { ValidationError } from '@multiagents/contracts';

/** Default of {@link RedisKeys}' prefix (SPEC §7, `MULTIAGENTS_PREFIX`). */
export const DEFAULT_REDIS_KEY_PREFIX = 'multiagents';

// Redis Cluster hashes only what is between the first `{` and the next `}`. A brace inside the
// prefix or a topic would move or empty that tag, and a topic's keys could land in different slots.
const BRACES = /[{}]/;

/**
 * The only place where the bus builds Redis key names. Every key of one topic carries the
 * topic's hash tag (`{<topic>}`), so they all live in one Redis Cluster slot and a Lua script
 * may touch any of them together (ack + dead-letter, replay, trim):
 *
 * ```
 * <prefix>:{<topic>}:stream   the topic's messages (one stream entry per envelope, field `d`)
 * <prefix>:{<topic>}:dead     its dead letters (fields d, group, error, count, at, source)
 * ```
 *
 * @example
 * const keys = new RedisKeys('multiagents');
 * keys.stream('commands.inventory.reserve'); // 'multiagents:{commands.inventory.reserve}:stream'
 */
export class RedisKeys {
  constructor(readonly prefix: string = DEFAULT_REDIS_KEY_PREFIX) {
    const problems = RedisKeys.prefixProblems(prefix);
    if (problems.length > 0) throw new ValidationError('Redis key prefix', problems);
  }

  /** What is wrong with `prefix` as a key prefix (empty when it is fine). */
  static prefixProblems(prefix: unknown): string[] {
    if (typeof prefix !== 'string' || prefix.length === 0) return ['prefix must be a non-empty string'];
    if (BRACES.test(prefix)) return ['prefix must not contain { or } (they would break the hash tags)'];
    return [];
  }

  /** The hash tag shared by every key of `topic`. Throws `ValidationError` for a bad topic. */
  hashTag(topic: string): string {
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new ValidationError('topic', ['must be a non-empty string']);
    }
    if (BRACES.test(topic)) {
      throw new ValidationError('topic', [`${topic} must not contain { or } (Redis Cluster hash tags)`]);
    }
    return `{${topic}}`;
  }

  /** The stream holding `topic`'s messages. */
  stream(topic: string): string {
    return `${this.prefix}:${this.hashTag(topic)}:stream`;
  }

  /** The stream holding `topic`'s dead letters. */
  deadLetters(topic: string): string {
    return `${this.prefix}:${this.hashTag(topic)}:dead`;
  }
}
