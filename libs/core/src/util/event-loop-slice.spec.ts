import { setImmediate as nextTurn } from 'node:timers/promises';
import { EventLoopSlice } from './event-loop-slice';

/** Holds the thread for `ms` (work that waits on no I/O). */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('EventLoopSlice', () => {
  it('is due once the loop has not turned for the slice, and not again until it has', async () => {
    // A clock of the test's own: how long the assertions take changes nothing.
    let now = 0;
    const slice = new EventLoopSlice(2, () => now);
    expect(slice.due()).toBe(false); // the first call of a task starts the slice
    now = 1.9;
    expect(slice.due()).toBe(false);
    now = 2;
    expect(slice.due()).toBe(true);
    await Promise.resolve(); // a microtask is the same task: still due
    expect(slice.due()).toBe(true);
    await nextTurn();
    expect(slice.due()).toBe(false);
  });

  it('lets a timer run in the middle of work chained on promises', async () => {
    const slice = new EventLoopSlice(5);
    let timerFired = false;
    setTimeout(() => (timerFired = true), 0);
    let items = 0;
    // Each item resolves without I/O, like a step of a worker that computes: without the slice
    // the timer would wait for all 100,000 of them.
    for (; items < 100_000 && !timerFired; items++) {
      if (slice.due()) await nextTurn();
      await Promise.resolve(busy(0.1));
    }
    expect(timerFired).toBe(true);
    expect(items).toBeLessThan(100_000);
  });
});
