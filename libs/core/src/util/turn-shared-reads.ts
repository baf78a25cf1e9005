/**
 * Reads that the calls of one event-loop turn share: the first call for a key queues one read,
 * made on the next `setImmediate`, and every call for that key until then gets its answer. Each
 * caller began before the read was made, so each sees every write that ended before it began; a
 * call after the read was made queues a new one. Not a cache: nothing is kept once it is answered.
 * For reads every burst of requests needs and none may serve stale (a workflow's latest version at
 * each start).
 *
 * @example
 * const latest = new TurnSharedReads((id: string) => store.readLatest(id));
 * await Promise.all([latest.get('orders'), latest.get('orders')]); // one read
 */
export class TurnSharedReads<K, V> {
  private readonly queued = new Map<K, Promise<V>>();

  constructor(private readonly read: (key: K) => Promise<V>) {}

  get(key: K): Promise<V> {
    const queued = this.queued.get(key);
    if (queued !== undefined) return queued;
    const answer = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.queued.delete(key);
      return this.read(key);
    });
    this.queued.set(key, answer);
    return answer;
  }
}
