/**
 * Serialises work per key inside one process. Compare-and-set keeps several processes correct;
 * this only spares one process from racing itself (parallel branches finishing together).
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const current = new Promise<void>((resolve) => (release = resolve));
    this.tails.set(key, current);
    try {
      if (previous) await previous;
      return await work();
    } finally {
      release();
      if (this.tails.get(key) === current) this.tails.delete(key);
    }
  }
}
