import { ErrorCode, RunState } from '@multiagents/contracts';
import { DEFAULT_REDIS_KEY_PREFIX, RUN_STATES, RedisKeys } from './redis-keys';

/** The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key, mod 16384. */
function slot(key: string): number {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  const hashed = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(hashed, 'utf8')) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe('RedisKeys', () => {
  const keys = new RedisKeys('app');

  it('computes Redis Cluster slots like Redis does (reference values)', () => {
    expect(slot('foo')).toBe(12182);
    expect(slot('{user1000}.following')).toBe(slot('{user1000}.followers'));
    expect(slot('123456789')).toBe(0x31c3 % 16384);
  });

  it("puts a run's record and outbox in one slot, the run's own", () => {
    for (const txId of ['tx-1', '3f0c2b1e-8d4e-4c1a-9f00-123456789abc', 'runs', 'ü-ñ']) {
      expect(slot(keys.run(txId))).toBe(slot(keys.outbox(txId)));
      expect(keys.run(txId)).toBe(`app:{${txId}}:run`);
      expect(keys.outbox(txId)).toBe(`app:{${txId}}:outbox`);
    }
    expect(slot(keys.run('tx-1'))).not.toBe(slot(keys.run('tx-2')));
  });

  it('gives each global concern one fixed slot, whatever the state or workflow id', () => {
    const runs = slot(keys.runsAll());
    for (const key of [keys.runsMeta(), ...keys.runsByEveryState(), keys.runsByWorkflow('a{b}c')]) {
      expect(slot(key)).toBe(runs);
    }
    expect(slot(keys.outboxPending())).toBe(slot(keys.outboxMarks()));
    expect(slot(keys.timersDue())).toBe(slot(keys.timersData()));
    expect(slot(keys.definitionIds())).toBe(slot(keys.definition('orders')));
    expect(slot(keys.definition('x}{y'))).toBe(slot(keys.definitionIds()));
    expect(
      new Set([runs, slot(keys.outboxPending()), slot(keys.timersDue()), slot(keys.definitionIds())]).size,
    ).toBe(4);
  });

  it('keeps every key under the prefix and apart from other prefixes', () => {
    const other = new RedisKeys('other');
    const all = (k: RedisKeys): string[] => [
      k.run('t'),
      k.outbox('t'),
      k.idempotency('key'),
      k.runsAll(),
      k.runsByState(RunState.Running),
      k.runsByWorkflow('w'),
      k.runsMeta(),
      k.outboxPending(),
      k.outboxMarks(),
      k.timersDue(),
      k.timersData(),
      k.definitionIds(),
      k.definition('w'),
    ];
    for (const key of all(keys)) expect(key.startsWith('app:')).toBe(true);
    expect(new Set(all(keys)).size).toBe(13);
    for (const key of all(other)) expect(all(keys)).not.toContain(key);
  });

  it('names per-run keys so that no txId can collide with a global key', () => {
    const globals = [
      keys.runsAll(),
      keys.runsMeta(),
      keys.outboxPending(),
      keys.timersDue(),
      keys.definitionIds(),
    ];
    for (const txId of ['runs', 'outbox', 'timers', 'definitions']) {
      expect(globals).not.toContain(keys.run(txId));
      expect(globals).not.toContain(keys.outbox(txId));
    }
  });

  it('uses an idempotency key whole, braces included', () => {
    expect(keys.idempotency('order-42')).toBe('app:idem:{order-42}');
    expect(keys.idempotency('a}b')).toBe('app:idem:{a}b}');
  });

  it('refuses txIds that would break the run hash tag, and bad prefixes', () => {
    for (const txId of ['', 'a{b', 'a}b', '{x}']) {
      expect(() => keys.run(txId)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    }
    expect(() => new RedisKeys('')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => new RedisKeys('a{b')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(new RedisKeys().prefix).toBe(DEFAULT_REDIS_KEY_PREFIX);
  });

  it('lists every run state once, for the scripts that touch all state indexes', () => {
    expect([...RUN_STATES].sort()).toEqual(Object.values(RunState).sort());
    expect(keys.runsByEveryState()).toHaveLength(RUN_STATES.length);
  });
});
