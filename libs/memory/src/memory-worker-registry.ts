import { systemClock, type Clock, type WorkerManagerRecord, type WorkerRegistry } from '@multiagents/core';

/**
 * The live worker-manager replicas of one process (the embedded mode): each record is forgotten
 * `ttlMs` after its last announcement.
 *
 * @example
 * const registry = new MemoryWorkerRegistry();
 * await registry.announce({ managerId: 'wm-1', workers: ['payment.charge'], capacity: 16, inFlight: 0, seenAt: Date.now() }, 15_000);
 */
export class MemoryWorkerRegistry implements WorkerRegistry {
  private readonly records = new Map<string, { record: WorkerManagerRecord; expiresAt: number }>();

  constructor(private readonly clock: Clock = systemClock) {}

  async announce(record: WorkerManagerRecord, ttlMs: number): Promise<void> {
    this.records.set(record.managerId, { record, expiresAt: record.seenAt + ttlMs });
  }

  async withdraw(managerId: string): Promise<void> {
    this.records.delete(managerId);
  }

  async list(): Promise<WorkerManagerRecord[]> {
    const now = this.clock.now();
    const live: WorkerManagerRecord[] = [];
    for (const [id, { record, expiresAt }] of this.records) {
      if (expiresAt <= now) this.records.delete(id);
      else live.push(record);
    }
    return live.sort((a, b) => (a.managerId < b.managerId ? -1 : 1));
  }

  async close(): Promise<void> {}
}
