import { ErrorCode, MultiAgentsError, ResourceExhaustedError } from '@multiagents/contracts';
import { JetStreamApiCodes, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { BucketKind, NatsKeys } from './nats-keys';
import type { ResolvedNatsStoreOptions } from './nats-store-options';

/** One stored value with the revision that guards it. */
export interface KvRecord {
  readonly revision: number;
  readonly data: Uint8Array;
  /** When the server stored this revision (ms since the epoch, server clock). */
  readonly createdAt: number;
}

/** How long the client waits between reconnect attempts to a lost server. */
const RECONNECT_WAIT_MS = 250;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** JSON to the bytes stored in KV. */
export function toBytes(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Stored bytes back to JSON. */
export function fromBytes<T>(data: Uint8Array): T {
  return JSON.parse(decoder.decode(data)) as T;
}

/**
 * The thin layer every NATS store talks through: it opens (or borrows) the connection, checks
 * that the server has JetStream, creates the buckets, and runs each KV operation with a deadline,
 * turning NATS errors into MultiAgents errors. It uses only request/reply APIs (no consumers), so
 * during an outage every call rejects after `requestTimeoutMs` and none hangs.
 *
 * Deletions are stream purges, never KV deletes: a KV delete leaves a tombstone message per key
 * that the server keeps (and scans) forever, while a purge removes the key's messages outright.
 * `purgeUpTo(key, revision)` removes only revisions up to the one read, so it doubles as a
 * compare-and-delete: a newer write survives it.
 */
export class KvClient {
  private connection: NatsConnection | undefined;
  private manager: JetStreamManager | undefined;
  private readonly buckets = new Map<BucketKind, KV>();
  private starting: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly options: ResolvedNatsStoreOptions,
    private readonly names: NatsKeys,
    private readonly component: string,
    private readonly kinds: readonly BucketKind[],
  ) {}

  /** Connects, checks JetStream and opens (creating when missing) the buckets; idempotent. */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    this.starting ??= this.open().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  /** Closes the connection if this client opened it; later calls are refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.starting?.catch(() => undefined);
    if (this.options.connection === undefined && this.connection !== undefined) {
      await this.connection.close().catch(() => undefined);
    }
  }

  /** The current value of `key`, or undefined when it has none. */
  async get(kind: BucketKind, key: string): Promise<KvRecord | undefined> {
    const kv = await this.bucket(kind);
    const entry = await this.call('get', kind, () => kv.get(key));
    if (entry === null || entry.operation !== 'PUT') return undefined;
    return { revision: entry.revision, data: entry.value, createdAt: entry.created.getTime() };
  }

  /** Writes `key` only if it has no value; the new revision, or undefined when it exists. */
  async create(kind: BucketKind, key: string, data: Uint8Array): Promise<number | undefined> {
    const kv = await this.bucket(kind);
    return this.call('create', kind, async () => {
      try {
        return await kv.create(key, data);
      } catch (err) {
        if (isWrongRevision(err)) return undefined;
        throw err;
      }
    });
  }

  /** Writes `key` only if its revision is still `revision`; the new one, or undefined. */
  async update(
    kind: BucketKind,
    key: string,
    data: Uint8Array,
    revision: number,
  ): Promise<number | undefined> {
    const kv = await this.bucket(kind);
    return this.call('update', kind, async () => {
      try {
        return await kv.update(key, data, revision);
      } catch (err) {
        if (isWrongRevision(err)) return undefined;
        throw err;
      }
    });
  }

  /** Writes `key` whatever it holds; the new revision. */
  async put(kind: BucketKind, key: string, data: Uint8Array): Promise<number> {
    const kv = await this.bucket(kind);
    return this.call('put', kind, () => kv.put(key, data));
  }

  /**
   * Removes the revisions of `key` up to `revision`: the key is gone if that was its current
   * revision, and untouched if it was written since. True when something was removed.
   */
  async purgeUpTo(kind: BucketKind, key: string, revision: number): Promise<boolean> {
    const manager = await this.jsm();
    const response = await this.call('purge', kind, () =>
      manager.streams.purge(this.stream(kind), { filter: this.subject(kind, key), seq: revision + 1 }),
    );
    return response.purged > 0;
  }

  /** Removes `key` whatever it holds. */
  async purge(kind: BucketKind, key: string): Promise<void> {
    const manager = await this.jsm();
    await this.call('purge', kind, () =>
      manager.streams.purge(this.stream(kind), { filter: this.subject(kind, key) }),
    );
  }

  /**
   * The keys matching `filter` (NATS wildcards), in no particular order. One stream-info request
   * (paged by the client above 100 000 subjects): the server matches the filter against every
   * key of the bucket, then sends only the matches.
   */
  async keys(kind: BucketKind, filter: string): Promise<string[]> {
    const manager = await this.jsm();
    const info = await this.call('list keys', kind, () =>
      manager.streams.info(this.stream(kind), { subjects_filter: this.subject(kind, filter) }),
    );
    const prefixLength = this.subject(kind, '').length;
    return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefixLength));
  }

  /** Deletes every bucket this client uses, with all its data (tests and teardown). */
  async destroy(): Promise<void> {
    const manager = await this.jsm();
    for (const kind of this.kinds) {
      await this.call('destroy', kind, () => manager.streams.delete(this.stream(kind))).catch(
        () => undefined,
      );
    }
    this.buckets.clear();
  }

  private async open(): Promise<void> {
    const timeout = this.options.requestTimeoutMs;
    const where = this.options.servers?.join(',') ?? 'the given connection';
    let connection = this.options.connection;
    if (connection === undefined) {
      try {
        connection = await connect({
          servers: [...(this.options.servers ?? [])],
          timeout,
          // Reconnect forever: operations fail fast (bounded) during an outage, and the store
          // works again as soon as the server is back.
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: RECONNECT_WAIT_MS,
          name: this.component,
        });
      } catch (err) {
        throw new MultiAgentsError(
          ErrorCode.FailedPrecondition,
          `${this.component}: cannot connect to NATS at ${where}: ${messageOf(err)}`,
          { cause: err, retryable: true, details: { servers: where } },
        );
      }
    }
    this.connection = connection;
    try {
      this.manager = await jetstreamManager(connection, { timeout });
    } catch (err) {
      if (this.options.connection === undefined) await connection.close().catch(() => undefined);
      const disabled = err instanceof Error && /jetstream (is )?not enabled/i.test(err.message);
      throw new MultiAgentsError(
        ErrorCode.FailedPrecondition,
        disabled
          ? `${this.component}: the NATS server at ${where} has no JetStream (start nats-server with ` +
              `-js, or enable jetstream in its configuration): ${messageOf(err)}`
          : `${this.component}: JetStream at ${where} did not answer: ${messageOf(err)}`,
        { cause: err, retryable: !disabled, details: { servers: where } },
      );
    }
    const kvm = new Kvm(jetstream(connection, { timeout }));
    for (const kind of this.kinds) {
      const name = this.names.bucket(kind);
      try {
        const kv = await this.call('open bucket', kind, () =>
          kvm.create(name, {
            history: 1,
            replicas: this.options.replicas,
            timeout,
            // Direct gets may be answered by any replica, which can lag: a read-after-write (or
            // the read before a compare-and-set) must come from the leader once there are replicas.
            allow_direct: this.options.replicas === 1,
            description: `MultiAgents ${this.component} (${kind})`,
          }),
        );
        this.buckets.set(kind, kv);
      } catch (err) {
        if (this.options.connection === undefined) await connection.close().catch(() => undefined);
        throw new MultiAgentsError(
          ErrorCode.FailedPrecondition,
          `${this.component}: cannot open or create bucket ${name} with ${this.options.replicas} ` +
            `replica(s) on ${where}: ${messageOf(err)}`,
          { cause: err, retryable: true, details: { bucket: name, replicas: this.options.replicas } },
        );
      }
    }
    if (this.closed && this.options.connection === undefined) await connection.close().catch(() => undefined);
  }

  private async bucket(kind: BucketKind): Promise<KV> {
    await this.start();
    if (this.closed) throw this.closedError();
    const kv = this.buckets.get(kind);
    if (kv === undefined) throw new Error(`${this.component}: bucket ${kind} is not open`);
    return kv;
  }

  private async jsm(): Promise<JetStreamManager> {
    await this.start();
    if (this.closed) throw this.closedError();
    return this.manager as JetStreamManager;
  }

  private stream(kind: BucketKind): string {
    return `KV_${this.names.bucket(kind)}`;
  }

  private subject(kind: BucketKind, key: string): string {
    return `$KV.${this.names.bucket(kind)}.${key}`;
  }

  private closedError(): Error {
    return new Error(`${this.component} is closed`);
  }

  /**
   * Runs one NATS call with a deadline. The client's own request timeout normally ends a call
   * first; the deadline is the guarantee that nothing waits forever whatever the client does.
   */
  private async call<T>(op: string, kind: BucketKind, work: () => Promise<T>): Promise<T> {
    const limit = this.options.requestTimeoutMs * 2;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), limit);
    });
    try {
      return await Promise.race([work(), deadline]);
    } catch (err) {
      throw this.translate(op, kind, err);
    } finally {
      clearTimeout(timer);
    }
  }

  private translate(op: string, kind: BucketKind, err: unknown): Error {
    if (err instanceof MultiAgentsError) return err;
    const name = err instanceof Error ? err.name : '';
    const message = messageOf(err);
    const where = `${this.component}: ${op} on bucket ${this.names.bucket(kind)}`;
    if (/maximum (payload|message size)|message size exceeds/i.test(message)) {
      return new ResourceExhaustedError(`${where}: the value is larger than the server accepts`, {
        bucket: this.names.bucket(kind),
      });
    }
    if (
      name === 'TimeoutError' ||
      name === 'NoResponders' ||
      name === 'NoRespondersError' ||
      name === 'ClosedConnectionError' ||
      name === 'DrainingConnectionError' ||
      name === 'ConnectionError' ||
      /no responders|timeout|connection (closed|draining)/i.test(message)
    ) {
      return new MultiAgentsError(
        ErrorCode.Timeout,
        `${where}: NATS did not answer within ${this.options.requestTimeoutMs} ms (${message}); ` +
          'is the server reachable? The connection keeps reconnecting.',
        { cause: err, retryable: true, details: { bucket: this.names.bucket(kind), op } },
      );
    }
    return new MultiAgentsError(ErrorCode.Internal, `${where} failed: ${message}`, {
      cause: err,
      retryable: true,
      details: { bucket: this.names.bucket(kind), op },
    });
  }
}

/** The server refused a write because the key's revision was not the expected one. */
function isWrongRevision(err: unknown): boolean {
  // By code, not instanceof: the KV package may load its own copy of the JetStream classes.
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return (
    code === JetStreamApiCodes.StreamWrongLastSequence ||
    code === JetStreamApiCodes.StreamWrongLastSequenceUnknown
  );
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
