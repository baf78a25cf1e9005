import { ErrorCode } from '@multiagents/contracts';
import { decodeMemoRecord, encodeMemoRecord, type MemoStore } from '@multiagents/core';
import type { KV } from '@nats-io/kv';
import { isKeyExists, isWrongRevision, natsError, untilAnswered, type NatsContext } from './nats-context';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/**
 * Tries of one `put` when NATS does not answer in time: a write whose answer was lost is safe to
 * try again (the second try finds the first one's record, which is the caller's own).
 */
const PUT_TRIES = 3;
const PUT_RETRY_DELAY_MS = 100;

/**
 * A {@link MemoStore} on NATS KV (`backend.memo`): bucket `<prefix>-memo`, key `k.<key>`, created
 * on first use (only processes hosting agents pay for it; a least-privilege user that never
 * touches it needs no right on it) with the backend's replicas and storage, history 1 and a
 * `max_age` of `memoMaxAgeMs` (records are written once, so the age is the record's). `put` is
 * `kv.create`: the server takes the first writer and refuses the others, who read the kept record
 * back; a write NATS does not answer is tried again (up to three times). Reads go to the stream's leader when there are replicas (a lagging replica could miss a
 * record just written). Failures reject with the backend's error codes (TIMEOUT while NATS is
 * away or after close); a stored value that is not JSON makes `get` reject with MemoRecordCorruptError.
 *
 * @example
 * const { memo } = await createNatsBackend({ servers: 'nats://127.0.0.1:4222' });
 * const kept = await memo.put('tx-1:answer', { answer: 'Paris' }); // the first writer's record
 */
export class NatsMemoStore implements MemoStore {
  private readonly bucket: () => Promise<KV>;

  constructor(private readonly ctx: NatsContext) {
    this.bucket = ctx.lazyBucket(ctx.names.memoBucket, ctx.options.memoMaxAgeMs);
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const name = this.ctx.names.memoRecord(key);
    const text = await this.read(key, name);
    return text === undefined ? undefined : decodeMemoRecord<T>(text, key, this.where(name));
  }

  async put<T>(key: string, record: T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.putOnce(key, record);
      } catch (err) {
        if (attempt >= PUT_TRIES || (err as { code?: unknown }).code !== ErrorCode.Timeout) throw err;
        await new Promise((resolve) => setTimeout(resolve, PUT_RETRY_DELAY_MS * attempt));
      }
    }
  }

  private async putOnce<T>(key: string, record: T): Promise<T> {
    const name = this.ctx.names.memoRecord(key);
    const data = encoder.encode(encodeMemoRecord(record, key));
    const kv = await this.bucket();
    try {
      await untilAnswered(() => kv.create(name, data));
      return decodeMemoRecord<T>(decoder.decode(data), key, this.where(name));
    } catch (err) {
      if (!(isWrongRevision(err) || isKeyExists(err))) {
        throw natsError(`writing the memo record ${key}`, err, { key: name });
      }
    }
    // Another writer came first: theirs is the record.
    const text = await this.read(key, name);
    if (text === undefined) {
      throw natsError(
        `writing the memo record ${key}`,
        new Error('the kept record vanished as it was read'),
        {
          key: name,
        },
      );
    }
    return decodeMemoRecord<T>(text, key, this.where(name));
  }

  /** The backend owns the connection. */
  async close(): Promise<void> {}

  private async read(key: string, name: string): Promise<string | undefined> {
    const kv = await this.bucket();
    try {
      const entry = await untilAnswered(() => kv.get(name));
      if (entry === null || entry.operation !== 'PUT') return undefined;
      return decoder.decode(entry.value);
    } catch (err) {
      throw natsError(`reading the memo record ${key}`, err, { key: name });
    }
  }

  private where(name: string): string {
    return `NATS memo ${this.ctx.names.memoBucket} ${name}`;
  }
}
