/** Where a run sorts: by `createdAt`, then `txId`, so the order is total even when times tie. */
export interface RunKey {
  readonly createdAt: number;
  readonly txId: string;
}

/** Orders {@link RunKey}s ascending (oldest first). */
export function compareRunKeys(a: RunKey, b: RunKey): number {
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.txId < b.txId ? -1 : a.txId > b.txId ? 1 : 0;
}

/** Above this many removed keys still in place (and more than the live ones), the array is compacted. */
const COMPACT_MIN = 1024;

/**
 * Run keys in ascending order, for newest-first listing with cursors. Inserting is an append:
 * runs enter a state in about the order they were created, but not exactly (a run that
 * compensates finishes after younger ones), and a sorted insert into the middle of thousands of
 * keys moves them all — in the embedded bench that was 7% of the CPU. The keys are sorted when
 * they are next read instead ({@link at}, {@link partitionPoint}): writes are per step, reads
 * per listing. Removing (a run leaving a state, or leaving the process) is O(1): the key stays in
 * place, marked dead, and readers skip it with {@link has}; the array is compacted once dead keys
 * outnumber live ones, so removal stays amortised O(1) however many runs pass through a state.
 */
export class SortedRunIndex {
  private keys: RunKey[] = [];
  /** Some key was appended after a greater one: sort before the next read. */
  private unsorted = false;
  /** Runs in the index. */
  private readonly live = new Set<string>();
  /** Runs whose key is in `keys` (live, or removed and not compacted away yet). */
  private readonly placed = new Set<string>();

  /** Positions in the array, live and dead: walk `0 … length - 1` and skip what {@link has} denies. */
  get length(): number {
    return this.keys.length;
  }

  /** Runs in the index. */
  get size(): number {
    return this.live.size;
  }

  /** Whether the run is in the index. */
  has(txId: string): boolean {
    return this.live.has(txId);
  }

  /** The key at position `i` (0 is the oldest), live or dead. */
  at(i: number): RunKey | undefined {
    return this.sorted()[i];
  }

  /** Adds a key (a run's createdAt never changes, so a removed key still in place is reused). */
  insert(key: RunKey): void {
    if (this.live.has(key.txId)) return;
    this.live.add(key.txId);
    if (this.placed.has(key.txId)) return;
    this.placed.add(key.txId);
    const last = this.keys[this.keys.length - 1];
    if (last !== undefined && compareRunKeys(last, key) > 0) this.unsorted = true;
    this.keys.push(key);
  }

  /** Removes a key, if present. */
  remove(key: RunKey): void {
    if (!this.live.delete(key.txId)) return;
    const dead = this.placed.size - this.live.size;
    if (dead > COMPACT_MIN && dead > this.live.size) {
      this.keys = this.keys.filter((k) => this.live.has(k.txId));
      this.placed.clear();
      for (const txId of this.live) this.placed.add(txId);
    }
  }

  /**
   * The first position whose key fails `isBefore`, given that `isBefore` holds for a prefix of
   * the keys and fails for the rest (binary search over live and dead keys alike).
   */
  partitionPoint(isBefore: (key: RunKey) => boolean): number {
    const keys = this.sorted();
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (isBefore(keys[mid] as RunKey)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private sorted(): RunKey[] {
    if (this.unsorted) {
      this.keys.sort(compareRunKeys);
      this.unsorted = false;
    }
    return this.keys;
  }
}
