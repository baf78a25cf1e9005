import { RecentIds } from './recent-ids';

describe('RecentIds', () => {
  it('recognises an id seen among the last capacity ids, and forgets older ones', () => {
    const recent = new RecentIds(3);
    expect(['a', 'b', 'c'].map((id) => recent.seen(id))).toEqual([false, false, false]);
    expect(recent.seen('a')).toBe(true);
    expect(recent.seen('d')).toBe(false); // a, the oldest, is forgotten
    expect(recent.seen('a')).toBe(false);
    expect(recent.seen('c')).toBe(true);
  });

  it('handles a forgotten id again, and remembers it from then on', () => {
    const recent = new RecentIds(3);
    recent.seen('a');
    recent.forget('a');
    expect(recent.seen('a')).toBe(false);
    expect(recent.seen('a')).toBe(true);
  });

  it('stays exact through many evictions', () => {
    const recent = new RecentIds(1_000);
    let recognised = 0;
    for (let i = 0; i < 50_000; i += 1) if (recent.seen(`id-${i}`)) recognised += 1;
    expect(recognised).toBe(0);
    expect(recent.seen('id-49999')).toBe(true);
    expect(recent.seen('id-49000')).toBe(true);
    expect(recent.seen('id-48999')).toBe(false);
  });
});
