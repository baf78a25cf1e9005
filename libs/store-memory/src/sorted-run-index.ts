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

/**
 * Run keys kept sorted ascending. New runs are nearly always the newest, so inserting is an
 * append in practice; removing (a run leaving a state) costs a binary search and a short splice.
 */
export class SortedRunIndex {
  private readonly keys: RunKey[] = [];

  /** Keys held. */
  get size(): number {
    return this.keys.length;
  }

  /** The key at position `i` (0 is the oldest). */
  at(i: number): RunKey | undefined {
    return this.keys[i];
  }

  /** Adds a key (not already present). */
  insert(key: RunKey): void {
    const last = this.keys[this.keys.length - 1];
    if (last === undefined || compareRunKeys(last, key) < 0) {
      this.keys.push(key);
      return;
    }
    this.keys.splice(
      this.partitionPoint((k) => compareRunKeys(k, key) < 0),
      0,
      key,
    );
  }

  /** Removes a key, if present. */
  remove(key: RunKey): void {
    const i = this.partitionPoint((k) => compareRunKeys(k, key) < 0);
    const found = this.keys[i];
    if (found !== undefined && compareRunKeys(found, key) === 0) this.keys.splice(i, 1);
  }

  /**
   * The first position whose key fails `isBefore`, given that `isBefore` holds for a prefix of
   * the keys and fails for the rest (binary search).
   */
  partitionPoint(isBefore: (key: RunKey) => boolean): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (isBefore(this.keys[mid] as RunKey)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
