import fc from 'fast-check';
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
    const op = fc.record({
      kind: fc.constantFrom('set', 'set', 'set', 'touch', 'delete', 'clear'),
      key: fc.nat({ max: 300 }),
    });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.array(op, { maxLength: 3_000 }), (capacity, ops) => {
        const map = new LruMap<number, number>(capacity);
        let reference = new ReferenceLru(capacity);
        ops.forEach(({ kind, key }, i) => {
          if (kind === 'set') {
            map.set(key % (capacity * 3), i);
            reference.set(key % (capacity * 3), i);
          } else if (kind === 'touch') {
            map.touch(key % (capacity * 3));
            reference.touch(key % (capacity * 3));
          } else if (kind === 'delete') {
            map.delete(key % (capacity * 3));
            reference.delete(key % (capacity * 3));
          } else if (key % 50 === 0) {
            map.clear();
            reference = new ReferenceLru(capacity);
          }
        });
        expect(map.size).toBe(reference.entries.length);
        for (const [key, value] of reference.entries) expect(map.get(key)).toBe(value);
        // Same order: once full, each new key drops the reference's oldest, one by one.
        for (let fresh = map.size; fresh < capacity; fresh += 1) map.set(-1 - fresh, 0);
        reference.entries.forEach(([oldest], i) => {
          expect(map.get(oldest)).toBeDefined();
          map.set(-1 - capacity - i, 0);
          expect(map.get(oldest)).toBeUndefined();
        });
      }),
      { numRuns: 200 },
    );
  });
});
