/**
 * A Map that keeps at most `capacity` entries, forgetting the least recently set (or read with
 * `touch`) first. For caches and remembered ids whose loss is always safe: a read saved, a stale
 * wake-up dropped early, a duplicate recognised.
 *
 * Eviction is amortised O(1). A Map keeps insertion order, but `map.keys().next()` walks from the
 * table's start over every entry deleted since it was last compacted: with the oldest evicted on
 * each set (and a moved key leaving a hole behind), that is a walk over thousands of holes per
 * call once the map is full (5 µs and more per set at 10,000 entries). One key iterator kept across
 * evictions never walks a hole twice: it only moves forward, a Map's iterators survive deletes
 * and compaction, and everything set later is behind it, so the first live key it reaches is the
 * oldest.
 *
 * @example
 * const cache = new LruMap<string, number>(2);
 * cache.set('a', 1); cache.set('b', 2); cache.set('c', 3); // 'a' is forgotten
 */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>();
  /** Where eviction goes on from (see the class doc); undefined until needed or once walked out. */
  private oldest: Iterator<K> | undefined;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Reads and marks as recently used. */
  touch(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** Sets the value and marks the key as recently used; forgets the oldest beyond `capacity`. */
  set(key: K, value: V): void {
    if (this.capacity <= 0) return;
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.capacity) this.evictOldest();
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
    this.oldest = undefined;
  }

  private evictOldest(): void {
    for (;;) {
      this.oldest ??= this.map.keys();
      const next = this.oldest.next();
      if (next.done !== true) {
        this.map.delete(next.value);
        return;
      }
      // Walked out (a done iterator stays done): start again from the table's start.
      this.oldest = undefined;
      if (this.map.size === 0) return;
    }
  }
}
