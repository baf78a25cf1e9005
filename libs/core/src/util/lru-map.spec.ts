import { LruMap } from './lru-map';

/** The same contract written the obvious way: an array, oldest first. */
class ReferenceLru {
  readonly entries: Array<[number, number]> = [];
  constructor(private readonly capacity: number) {}
  get(key: number): number | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }
  touch(key: number): void {
    const value = this.get(key);
    if (value !== undefined) this.set(key, value);
  }
  set(key: number, value: number): void {
    if (this.capacity <= 0) return;
    this.delete(key);
    this.entries.push([key, value]);
    while (this.entries.length > this.capacity) this.entries.shift();
  }
  delete(key: number): void {
    const i = this.entries.findIndex(([k]) => k === key);
    if (i >= 0) this.entries.splice(i, 1);
  }
}

/** mulberry32: the same sequence every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('LruMap', () => {
  it('keeps at most capacity entries, forgetting the least recently set first', () => {
    const map = new LruMap<string, number>(2);
    map.set('a', 1);
    map.set('b', 2);
    map.set('a', 10); // a is now the most recent
    map.set('c', 3);
    expect([map.get('a'), map.get('b'), map.get('c')]).toEqual([10, undefined, 3]);
    expect(map.size).toBe(2);
  });

  it('touch marks an entry as recently used; get does not', () => {
    const map = new LruMap<string, number>(2);
    map.set('a', 1);
    map.set('b', 2);
    expect(map.get('a')).toBe(1);
    map.set('c', 3);
    expect(map.get('a')).toBeUndefined();
    expect(map.touch('b')).toBe(2);
    map.set('d', 4);
    expect([map.get('b'), map.get('c'), map.get('d')]).toEqual([2, undefined, 4]);
  });

  it('keeps nothing with capacity 0', () => {
    const map = new LruMap<string, number>(0);
    map.set('a', 1);
    expect(map.size).toBe(0);
    expect(map.get('a')).toBeUndefined();
  });

  it('evicts in the right order through long runs of sets, touches, deletes and clears', () => {
    // The eviction cursor outlives many evictions, moves and the Map's compactions: the contents
    // must stay exactly those of the plain implementation, in the same order.
    for (const capacity of [1, 7, 100]) {
      const random = seeded(capacity);
      const map = new LruMap<number, number>(capacity);
      let reference = new ReferenceLru(capacity);
      const sizeMismatches: number[] = [];
      for (let op = 0; op < 20_000; op += 1) {
        const key = Math.floor(random() * capacity * 3);
        const roll = random();
        if (roll < 0.6) {
          map.set(key, op);
          reference.set(key, op);
        } else if (roll < 0.8) {
          map.touch(key);
          reference.touch(key);
        } else if (roll < 0.9995) {
          map.delete(key);
          reference.delete(key);
        } else {
          map.clear();
          reference = new ReferenceLru(capacity);
        }
        if (map.size !== reference.entries.length) sizeMismatches.push(op);
      }
      expect(sizeMismatches).toEqual([]);
      for (const [key, value] of reference.entries) expect(map.get(key)).toBe(value);
      // Same order: evicting them one by one (a set of new keys) drops the reference's oldest first.
      for (let i = 0; i < reference.entries.length; i += 1) {
        const [oldest] = reference.entries[i] as [number, number];
        expect(map.get(oldest)).toBeDefined();
        map.set(-1 - i, 0);
        expect(map.get(oldest)).toBeUndefined();
      }
    }
  });
});
