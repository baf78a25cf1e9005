import { RunState, Topics, ValidationError } from '@multiagents/contracts';
import { DEFAULT_REDIS_KEY_PREFIX, RedisKeys, fnv1a32 } from './redis-keys';

/** The slot-deciding part of a key, as Redis Cluster reads it. */
function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  if (open < 0 || close < 0 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

describe('RedisKeys', () => {
  it("puts every key of a run's partition under the partition's hash tag, after the prefix", () => {
    const keys = new RedisKeys('acme', 4);
    const txId = 'tx-{odd}:name';
    const p = keys.partitionOf(txId);
    const partitionKeys = [
      keys.run(p, txId),
      keys.timers(p),
      keys.indexAll(p),
      keys.indexState(p, RunState.Running),
      keys.indexWorkflow(p, 'orders'),
      keys.stream(p, Topics.results),
      keys.stream(p, Topics.events),
      keys.stream(p, Topics.command('inventory.reserve')),
      keys.deadLetters(p, Topics.results),
      keys.base(p),
    ];
    for (const key of partitionKeys) {
      expect(key.startsWith(`acme:{p${p}}:`)).toBe(true);
      // A brace inside a txId comes after the tag and cannot move it.
      expect(hashTagOf(key)).toBe(`p${p}`);
    }
    expect(keys.run(p, txId)).toBe(`acme:{p${p}}:run:${txId}`);
    expect(keys.indexState(p, RunState.Running)).toBe(`${keys.base(p)}st:running`);
    expect(keys.indexWorkflow(p, 'orders')).toBe(`${keys.base(p)}wf:orders`);
  });

  it('routes the run topics by txId and keeps other topics in one stream under their own tag', () => {
    const keys = new RedisKeys('acme', 3);
    const txId = 'tx-42';
    const p = keys.partitionOf(txId);
    expect(keys.topicStreamFor(Topics.results, txId)).toEqual({
      partition: p,
      slot: `p${p}`,
      stream: keys.stream(p, Topics.results),
      dead: keys.deadLetters(p, Topics.results),
    });
    expect(keys.topicStreams(Topics.command('w')).map((s) => s.partition)).toEqual([0, 1, 2]);
    expect(keys.topicStreams(Topics.events)).toHaveLength(3);
    const [other] = keys.topicStreams('audit');
    expect(keys.topicStreams('audit')).toHaveLength(1);
    expect(other).toEqual({
      partition: undefined,
      slot: 't:audit',
      stream: 'acme:{t:audit}:x',
      dead: 'acme:{t:audit}:dl',
    });
    expect(hashTagOf(other?.stream ?? '')).toBe(hashTagOf(other?.dead ?? ''));
  });

  it('spreads txIds over the partitions with a hash that never changes', () => {
    // Known FNV-1a values: the partition of a stored run must not move between versions.
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
    const keys = new RedisKeys('p', 8);
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8_000; i += 1)
      counts[keys.partitionOf(`tx-${i}`)] = (counts[keys.partitionOf(`tx-${i}`)] ?? 0) + 1;
    for (const n of counts) expect(n).toBeGreaterThan(800);
    expect(new RedisKeys('p', 1).partitionOf('anything')).toBe(0);
  });

  it('refuses prefixes that would break the hash tags and bad partition counts, all at once', () => {
    expect(new RedisKeys().prefix).toBe(DEFAULT_REDIS_KEY_PREFIX);
    expect(() => new RedisKeys('')).toThrow(ValidationError);
    expect(() => new RedisKeys('a{b', 0)).toThrow(
      /prefix must not contain.*partitions must be an integer >= 1/,
    );
    expect(() => new RedisKeys('p', 2.5)).toThrow(/partitions/);
    expect(() => new RedisKeys('p', 5_000)).toThrow(/at most/);
    const keys = new RedisKeys('p');
    expect(() => keys.run(0, '')).toThrow(ValidationError);
    expect(() => keys.topicStreams('')).toThrow(ValidationError);
  });
});
