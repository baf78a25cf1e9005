import { TurnWrites } from './turn-writes';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('TurnWrites', () => {
  it("makes one turn's writes together at the end of the turn, in the order they were added", async () => {
    const writes = new TurnWrites();
    const made: number[] = [];
    for (let i = 0; i < 5; i += 1) writes.add(() => made.push(i));
    await Promise.resolve();
    expect(made).toEqual([]);
    await nextTurn();
    expect(made).toEqual([0, 1, 2, 3, 4]);
    writes.add(() => made.push(5));
    await nextTurn();
    expect(made).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('goes on past a write that throws', async () => {
    const writes = new TurnWrites();
    const made: string[] = [];
    writes.add(() => made.push('a'));
    writes.add(() => {
      throw new Error('connection closed');
    });
    writes.add(() => made.push('c'));
    await nextTurn();
    expect(made).toEqual(['a', 'c']);
  });

  it('makes the queued writes at once on flush, and none twice', async () => {
    const writes = new TurnWrites();
    const made: string[] = [];
    writes.add(() => made.push('a'));
    writes.flush();
    expect(made).toEqual(['a']);
    await nextTurn();
    expect(made).toEqual(['a']);
  });
});
