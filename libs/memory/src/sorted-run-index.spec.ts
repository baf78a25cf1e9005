import { SortedRunIndex, type RunKey } from './sorted-run-index';

const key = (createdAt: number, txId: string): RunKey => ({ createdAt, txId });

/** The live keys, oldest first, as a listing walks them. */
function live(index: SortedRunIndex): string[] {
  const out: string[] = [];
  for (let i = 0; i < index.length; i++) {
    const k = index.at(i) as RunKey;
    if (index.has(k.txId)) out.push(k.txId);
  }
  return out;
}

describe('SortedRunIndex', () => {
  it('reads keys in order however they were inserted, ties broken by txId', () => {
    const index = new SortedRunIndex();
    for (const k of [key(5, 'e'), key(1, 'a'), key(3, 'c'), key(3, 'b'), key(9, 'z'), key(2, 'x')])
      index.insert(k);
    expect(live(index)).toEqual(['a', 'x', 'b', 'c', 'e', 'z']);
    // A binary search sees the sorted order too.
    expect(index.partitionPoint((k) => k.createdAt <= 3)).toBe(4);
    // More keys out of order after a read: sorted again at the next one.
    index.insert(key(0, 'first'));
    index.insert(key(4, 'd'));
    expect(index.partitionPoint((k) => k.createdAt < 4)).toBe(5);
    expect(live(index)).toEqual(['first', 'a', 'x', 'b', 'c', 'd', 'e', 'z']);
  });

  it('removes in place, skips removed keys, reuses a removed key on re-insert, and compacts', () => {
    const index = new SortedRunIndex();
    for (let i = 3000; i > 0; i--) index.insert(key(i, `t${i}`));
    for (let i = 1; i <= 2000; i++) index.remove(key(i, `t${i}`));
    expect(index.size).toBe(1000);
    // Compacted: fewer positions than keys ever inserted.
    expect(index.length).toBeLessThan(3000);
    expect(live(index)).toEqual(Array.from({ length: 1000 }, (_, i) => `t${2001 + i}`));
    index.insert(key(1500, 't1500'));
    index.insert(key(2500, 't2500')); // still live: no second copy
    expect(index.size).toBe(1001);
    expect(live(index)[0]).toBe('t1500');
    expect(live(index).filter((t) => t === 't2500')).toHaveLength(1);
  });
});
