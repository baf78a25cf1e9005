import { KeyedMutex } from './keyed-mutex';

/** A promise settled from outside. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('KeyedMutex', () => {
  it('runs the work of one key one at a time, in the order it came', async () => {
    const mutex = new KeyedMutex();
    const log: string[] = [];
    const first = gate();
    const a = mutex.run('k', async () => {
      log.push('a start');
      await first.promise;
      log.push('a end');
      return 'a';
    });
    const b = mutex.run('k', async () => {
      log.push('b');
      return 'b';
    });
    const c = mutex.run('k', () => {
      log.push('c');
      return Promise.resolve('c');
    });
    await Promise.resolve();
    expect(log).toEqual(['a start']);
    first.open();
    await expect(Promise.all([a, b, c])).resolves.toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['a start', 'a end', 'b', 'c']);
  });

  it('runs the work of different keys at once', async () => {
    const mutex = new KeyedMutex();
    const held = gate();
    const log: string[] = [];
    const a = mutex.run('a', async () => {
      await held.promise;
      log.push('a');
    });
    await mutex.run('b', async () => {
      log.push('b');
    });
    expect(log).toEqual(['b']);
    held.open();
    await a;
    expect(log).toEqual(['b', 'a']);
  });

  it('hands the key on after work that rejects or throws, and passes the error to its caller', async () => {
    const mutex = new KeyedMutex();
    const rejected = mutex.run('k', () => Promise.reject(new Error('rejected')));
    const thrown = mutex.run('k', () => {
      throw new Error('thrown');
    });
    const after = mutex.run('k', () => Promise.resolve('after'));
    await expect(rejected).rejects.toThrow('rejected');
    await expect(thrown).rejects.toThrow('thrown');
    await expect(after).resolves.toBe('after');
    // The key is free again: new work starts at once.
    let started = false;
    const next = mutex.run('k', () => {
      started = true;
      return Promise.resolve();
    });
    expect(started).toBe(true);
    await next;
  });

  it('starts work on a free key synchronously, and a waiter only once the holder settled', async () => {
    const mutex = new KeyedMutex();
    const held = gate();
    let holderStarted = false;
    let waiterStarted = false;
    const holder = mutex.run('k', async () => {
      holderStarted = true;
      await held.promise;
    });
    expect(holderStarted).toBe(true);
    const waiter = mutex.run('k', () => {
      waiterStarted = true;
      return Promise.resolve();
    });
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(waiterStarted).toBe(false);
    held.open();
    await Promise.all([holder, waiter]);
    expect(waiterStarted).toBe(true);
  });
});
