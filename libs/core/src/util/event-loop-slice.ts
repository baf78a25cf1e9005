/**
 * Lets the event loop turn when work chained on promises has held it too long. Work that goes on
 * in promise callbacks — a result applied, the next step handed to a worker of the same process, a
 * start let in when a run ends — never returns to the event loop while it lasts: with workers that
 * do not wait on I/O, a batch of runs would hold back timers, sockets and every other task of the
 * process until the whole batch ended. Such work asks {@link due} at each step and, when it says
 * so, awaits the loop's next turn (`setImmediate` of `node:timers/promises`) before going on:
 * timers and I/O then run, and the work after them.
 *
 * `due()` is false until the loop has not turned for `sliceMs` since the current task first asked
 * (the first call of a task queues an immediate that marks the turn); one `performance.now()` per
 * call otherwise.
 *
 * @example
 * import { setImmediate as nextTurn } from 'node:timers/promises';
 * const slice = new EventLoopSlice(10);
 * for (const item of items) {
 *   if (slice.due()) await nextTurn();
 *   await handle(item); // resolves without I/O
 * }
 */
export class EventLoopSlice {
  private startedAt = 0;
  /** An immediate is queued that marks the loop's next turn. */
  private watching = false;
  private readonly turned = (): void => {
    this.watching = false;
  };

  /** `now` is a monotonic clock in ms (tests pass their own). */
  constructor(
    private readonly sliceMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether the loop has not turned for `sliceMs` while this task's work went on. */
  due(): boolean {
    if (!this.watching) {
      this.watching = true;
      this.startedAt = this.now();
      setImmediate(this.turned);
      return false;
    }
    return this.now() - this.startedAt >= this.sliceMs;
  }
}
