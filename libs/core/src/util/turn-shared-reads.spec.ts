import { TurnSharedReads } from './turn-shared-reads';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('TurnSharedReads', () => {
  it('gives the calls of one turn for one key one read, and each key its own', async () => {
    const reads: string[] = [];
    const shared = new TurnSharedReads(async (key: string) => {
      reads.push(key);
      return `${key}@${reads.length}`;
    });
    const answers = await Promise.all([shared.get('a'), shared.get('a'), shared.get('b'), shared.get('a')]);
    expect(answers).toEqual(['a@1', 'a@1', 'b@2', 'a@1']);
    expect(reads).toEqual(['a', 'b']);
  });

  it('reads again for a call made after the read was sent', async () => {
    let reads = 0;
    const shared = new TurnSharedReads(async () => ++reads);
    const early = shared.get('k');
    await nextTurn(); // early's read is made
    const late = shared.get('k');
    expect([await early, await late]).toEqual([1, 2]);
  });

  it('gives every caller of the turn the read’s failure, and the next turn a fresh try', async () => {
    let fail = true;
    const shared = new TurnSharedReads(async () => {
      if (fail) throw new Error('down');
      return 'up';
    });
    const both = [shared.get('k'), shared.get('k')];
    await expect(Promise.all(both)).rejects.toThrow('down');
    await expect(both[1]).rejects.toThrow('down');
    fail = false;
    await expect(shared.get('k')).resolves.toBe('up');
  });
});
