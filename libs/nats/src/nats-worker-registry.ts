import type { WorkerManagerRecord, WorkerRegistry } from '@multiagents/core';
import type { KV } from '@nats-io/kv';
import { mapLimit } from './map-limit';
import { natsError, type NatsContext } from './nats-context';

/** A record as stored: the announcement and when it stops counting. */
interface Stored {
  readonly record: WorkerManagerRecord;
  readonly expiresAt: number;
}

const READ_CONCURRENCY = 16;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The live worker-manager replicas on NATS KV: a key `wm.<manager>` per replica in the
 * definitions bucket, holding its last announcement and when it expires. Not on the per-step
 * path: each replica writes once per heartbeat interval; a listing drops the keys whose time ran
 * out.
 *
 * @example
 * const { registry } = await createNatsBackend({ servers: 'nats://127.0.0.1:4222' });
 * const live = await registry.list();
 */
export class NatsWorkerRegistry implements WorkerRegistry {
  constructor(
    private readonly ctx: NatsContext,
    private readonly kv: KV,
  ) {}

  async announce(record: WorkerManagerRecord, ttlMs: number): Promise<void> {
    const stored: Stored = { record, expiresAt: record.seenAt + ttlMs };
    const key = this.ctx.names.workerManager(record.managerId);
    try {
      await this.kv.put(key, encoder.encode(JSON.stringify(stored)));
    } catch (err) {
      throw natsError(`announce of worker-manager ${record.managerId}`, err, { key });
    }
  }

  async withdraw(managerId: string): Promise<void> {
    const key = this.ctx.names.workerManager(managerId);
    try {
      await this.kv.purge(key);
    } catch (err) {
      throw natsError(`withdrawal of worker-manager ${managerId}`, err, { key });
    }
  }

  async list(): Promise<WorkerManagerRecord[]> {
    let keys: string[];
    try {
      keys = [];
      for await (const key of await this.kv.keys(this.ctx.names.workerManagerFilter)) keys.push(key);
    } catch (err) {
      throw natsError('listing worker-managers', err);
    }
    const now = Date.now();
    const read = await mapLimit(keys, READ_CONCURRENCY, async (key) => {
      const entry = await this.kv.get(key);
      if (entry === null || entry.operation !== 'PUT') return undefined;
      let stored: Stored | undefined;
      try {
        stored = JSON.parse(decoder.decode(entry.value)) as Stored;
      } catch {
        // Not ours: dropped like an expired one.
      }
      if (stored === undefined || !(stored.expiresAt > now)) {
        // Only that value: an announcement written since stays.
        await this.kv.purge(key, { previousSeq: entry.revision }).catch(() => undefined);
        return undefined;
      }
      return stored.record;
    });
    return read
      .filter((record): record is WorkerManagerRecord => record !== undefined)
      .sort((a, b) => (a.managerId < b.managerId ? -1 : 1));
  }

  /** The backend owns the connection. */
  async close(): Promise<void> {}
}
