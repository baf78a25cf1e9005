/**
 * Serialises work per key inside one process. Compare-and-set keeps several processes correct;
 * this only spares one process from racing itself (parallel branches finishing together).
 *
 * Almost every call finds its key free (one event per run at a time is the rule), so that path
 * makes no promise of its own: the work's promise, with one reaction that hands the key on.
 * Work that finds the key taken waits in a queue, first come first served.
 */
export class KeyedMutex {
  /** Keys taken → the work waiting for them, oldest first (usually none). */
  private readonly waiting = new Map<string, (() => void)[]>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const queue = this.waiting.get(key);
    if (queue === undefined) {
      this.waiting.set(key, []);
      return this.start(key, work);
    }
    return new Promise<T>((resolve, reject) => {
      queue.push(() => {
        this.start(key, work).then(resolve, reject);
      });
    });
  }

  /** Runs `work` holding `key`, and hands the key to the next waiter (or frees it) once it settles. */
  private start<T>(key: string, work: () => Promise<T>): Promise<T> {
    let running: Promise<T>;
    try {
      running = work();
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what the work threw, as an async function would
      running = Promise.reject(err);
    }
    return running.then(
      (value) => {
        this.release(key);
        return value;
      },
      (err: unknown) => {
        this.release(key);
        throw err;
      },
    );
  }

  private release(key: string): void {
    const queue = this.waiting.get(key);
    const next = queue?.shift();
    if (next === undefined) this.waiting.delete(key);
    else next();
  }
}
