import type { Delivery } from './event-bus';
import { silentLogger, type Logger } from './logger';
import { DeliveryExtender } from './delivery-extender';

/** A logger whose warnings go to `failures` (the messages of their errors). */
function failuresTo(failures: string[]): Logger {
  return { ...silentLogger, warn: (fields) => void failures.push((fields['err'] as Error).message) };
}

/** A delivery that counts its extends; `fail` makes them reject (or throw, when 'sync'). */
function delivery(id: string, fail?: 'async' | 'sync'): Delivery & { extends: number } {
  const d = {
    id,
    extends: 0,
    extend: (): Promise<void> => {
      d.extends += 1;
      if (fail === 'sync') throw new Error(`sync ${id}`);
      return fail === 'async' ? Promise.reject(new Error(`async ${id}`)) : Promise.resolve();
    },
  };
  return d as unknown as Delivery & { extends: number };
}

describe('DeliveryExtender', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('extends every held delivery each period with one timer, and stops once none is held', () => {
    const extender = new DeliveryExtender(300, silentLogger); // extends every 100 ms
    const [a, b] = [delivery('a'), delivery('b')];
    extender.hold(a);
    extender.hold(b);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(250);
    expect([a.extends, b.extends]).toEqual([2, 2]);
    extender.release(a);
    jest.advanceTimersByTime(100);
    expect([a.extends, b.extends]).toEqual([2, 3]);
    extender.release(b);
    jest.advanceTimersByTime(100);
    expect(jest.getTimerCount()).toBe(0);
    extender.hold(a);
    jest.advanceTimersByTime(100);
    expect(a.extends).toBe(3);
    extender.clear();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('reports a failed extend, sync or async, and keeps extending the delivery', async () => {
    const failures: string[] = [];
    const extender = new DeliveryExtender(300, failuresTo(failures));
    const [later, now] = [delivery('later', 'async'), delivery('now', 'sync')];
    extender.hold(later);
    extender.hold(now);
    jest.advanceTimersByTime(200);
    await Promise.resolve();
    expect([later.extends, now.extends]).toEqual([2, 2]);
    expect(failures.sort()).toEqual(['async later', 'async later', 'sync now', 'sync now']);
    extender.clear();
  });
});
