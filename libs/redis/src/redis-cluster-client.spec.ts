import { ValidationError } from '@multiagents/contracts';
import { clusterPartitions, parseClusterSeeds, redisKeySlot } from './redis-cluster-client';

describe('redisKeySlot', () => {
  it('matches Redis CLUSTER KEYSLOT, hash tags included', () => {
    // Values from redis-cli CLUSTER KEYSLOT on Redis 7.
    expect(redisKeySlot('foo')).toBe(12182);
    expect(redisKeySlot('123456789')).toBe(12739);
    expect(redisKeySlot('a:{p0}:run:tx')).toBe(redisKeySlot('p0'));
    expect(redisKeySlot('{}x')).toBe(redisKeySlot('{}x')); // empty tag: the whole key
    expect(redisKeySlot('{}x')).not.toBe(redisKeySlot(''));
  });
});

describe('clusterPartitions', () => {
  const even = (m: number) =>
    Array.from({ length: m }, (_, i) => ({
      host: '127.0.0.1',
      port: 7000 + i,
      slots: [[Math.floor((i * 16384) / m), Math.floor(((i + 1) * 16384) / m) - 1] as const],
    }));

  it('is a multiple of the masters that spreads the partitions as evenly as the tags allow', () => {
    for (const m of [1, 2, 3, 4, 6]) {
      const topology = { masters: even(m) };
      const p = clusterPartitions(topology);
      expect(p % m).toBe(0);
      expect(p).toBeLessThanOrEqual(4 * m);
    }
    // Three masters with even slot ranges: {p0},{p1},{p2} leave the first master empty (0 1 2),
    // P = 12 gives 3 3 6 — every master serves partitions.
    const three = { masters: even(3) };
    expect(clusterPartitions(three)).toBe(12);
    const counts = [0, 0, 0];
    for (let i = 0; i < 12; i++) {
      const slot = redisKeySlot(`{p${i}}`);
      counts[three.masters.findIndex((n) => n.slots.some(([s, e]) => slot >= s && slot <= e))]! += 1;
    }
    expect(Math.min(...counts)).toBeGreaterThan(0);
  });
});

describe('parseClusterSeeds', () => {
  it('takes host, port and the shared credentials', () => {
    expect(parseClusterSeeds(['redis://u:p%40ss@127.0.0.1:7000', 'redis://u:p%40ss@127.0.0.1:7001'])).toEqual(
      {
        nodes: [
          { host: '127.0.0.1', port: 7000 },
          { host: '127.0.0.1', port: 7001 },
        ],
        redisOptions: { username: 'u', password: 'p@ss' },
      },
    );
  });

  it('refuses seeds with different credentials, without printing them', () => {
    let error: unknown;
    try {
      parseClusterSeeds(['redis://:one@127.0.0.1:7000', 'redis://:two@127.0.0.1:7001', 'http://x']);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toHaveLength(2);
    expect(String((error as Error).message)).not.toMatch(/one|two/);
  });
});
