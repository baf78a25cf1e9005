import {
  ErrorCode,
  FailedPreconditionError,
  MAX_ENVELOPE_BYTES,
  MultiAgentsError,
  ResourceExhaustedError,
  toErrorInfo,
  ValidationError,
} from '@multiagents/contracts';
import type { Clock, Logger } from '@multiagents/core';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  JetStreamError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import {
  connect,
  credsAuthenticator,
  headers as natsHeaders,
  nkeyAuthenticator,
  type ConnectionOptions,
  type MsgHdrs,
  type NatsConnection,
} from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { ConnectionState } from './connection-state';
import { JetStreamRequests, type DirectQuery, type PublishAck } from './jetstream-requests';
import { TurnWrites } from './turn-writes';
import type { NatsCredentials, ResolvedNatsBackendOptions } from './nats-backend-options';
import { NatsNames } from './nats-names';

const NS_PER_MS = 1_000_000;
// Room for the headers of a published message (Nats-Msg-Id, expected stream, dead-letter fields).
const PUBLISH_HEADER_ALLOWANCE = 4 * 1024;
// JetStream API error codes (server/errors.json) told apart here.
const STREAM_NAME_IN_USE = 10058;
const SUBJECTS_OVERLAP = 10065;
/** Tries of opening a bucket that another process is creating at the same moment. */
const BUCKET_OPEN_TRIES = 5;
/** Tries of one KV request that found nobody listening (a stream just made is not yet subscribed). */
const KV_NO_RESPONDER_TRIES = 8;
/**
 * A stream with more replicas than servers to place them on (10005; 10023 on some versions), or
 * replicas on a server without a cluster (10074). 10005 also means servers are down right now.
 */
const NO_SUITABLE_PEERS = 10005;
const INSUFFICIENT_RESOURCES = 10023;
const REPLICAS_NOT_SUPPORTED = 10074;

/**
 * The servers of the cluster this connection sees: 1 without a cluster, else the client URLs the
 * server announces (its own and those its routes told it), at least 1.
 */
export function clusterSize(connection: NatsConnection): number {
  const info = connection.info;
  if (info === undefined || !info.cluster) return 1;
  return Math.max(1, new Set(info.connect_urls ?? []).size);
}

function replicasError(replicas: number, servers: number, why?: string): ValidationError {
  return new ValidationError('NATS replicas', [
    `replicas ${replicas} is more than the ${servers} server(s) of the NATS cluster: give at most ${servers}` +
      (why === undefined ? '' : ` (JetStream: ${why})`),
  ]);
}

/**
 * Replicas larger than the cluster: refused before anything is created. A server without a
 * cluster is certain; a cluster may not have announced every server yet, so it is only refused
 * when JetStream itself refuses a stream (see ensureStream).
 */
function checkReplicas(connection: NatsConnection, replicas: number): void {
  if (replicas > 1 && connection.info !== undefined && !connection.info.cluster) {
    throw replicasError(replicas, 1);
  }
}
/** Publish refused for lack of room: the stream's limits (10077), the server's (10047), the account's (10023). */
export const STREAM_FULL_CODES: readonly number[] = [10077, 10047, 10023];

/** A KV header: `DEL` or `PURGE` on a deleted key's marker. */
export const KV_OPERATION_HEADER = 'KV-Operation';

/**
 * What the backend counts, for the services' `/stats` (see `EventBus.counters`). Only ever
 * incremented; the bus returns a snapshot.
 */
export interface NatsCounters {
  /** Publishes JetStream refused as duplicates of an id it already held (a republish, a resend). */
  duplicatePublishes: number;
  /** Messages moved to the dead-letter stream. */
  deadLettered: number;
  /** Messages refused before parsing (unsigned, forged, unknown key, malformed), dead-lettered. */
  refusedEnvelopes: number;
  /** Outboxes (lifecycle event, timer wake-ups) published again from a record (see NatsRunStore). */
  outboxesRepublished: number;
  /** Publishes after a committed write that failed for good (the outbox stays for recovery). */
  outboxPublishFailures: number;
  /** Compare-and-set writes refused because another writer changed the run first. */
  casConflicts: number;
  /** Timer wake-ups dropped because a later transition had cancelled or moved their timer. */
  staleTimers: number;
  /** Index entries repaired (moved after a crash, or dropped as dangling) by reads and maintenance. */
  indexRepairs: number;
}

/** Options of one publish through {@link NatsContext.publish}. */
export interface PublishOptions {
  readonly msgID?: string;
  readonly headers?: MsgHdrs;
  /** The stream that must store it (a subject another stream captured is refused). */
  readonly expectStream?: string;
  /** Compare-and-set on the subject's last sequence (0: the subject must be empty). */
  readonly expectLastSubjectSequence?: number;
  /**
   * Try again while the failure is transient (default true). Never for a compare-and-set whose
   * first attempt may have landed: its retry would be refused and misread as a lost race.
   */
  readonly retry?: boolean;
}

/** A KV entry as read: its revision, value and when the server stored it. */
export interface KvRead {
  readonly revision: number;
  readonly data: Uint8Array;
  /** Server time of the write (ms since the epoch). */
  readonly writtenAt: number;
}

/**
 * The one connection setup of the NATS backend and what every part of it shares: the connection
 * (opened with a name, reconnecting for ever, or borrowed), the JetStream clients, the names,
 * options, counters and the connection's state. `open` connects, checks that the server has
 * JetStream (a server without it is a FAILED_PRECONDITION error saying how to enable it) and
 * creates or checks every stream, bucket and the timer consumer, so the hot path never makes a
 * JetStream API (admin) call.
 */
export class NatsContext {
  readonly counters: NatsCounters = {
    duplicatePublishes: 0,
    deadLettered: 0,
    refusedEnvelopes: 0,
    outboxesRepublished: 0,
    outboxPublishFailures: 0,
    casConflicts: 0,
    staleTimers: 0,
    indexRepairs: 0,
  };
  readonly names: NatsNames;
  readonly logger: Logger;
  readonly clock: Clock;
  private closing: Promise<void> | undefined;
  private readonly closeHooks: Array<() => Promise<void>> = [];
  private readonly requests: JetStreamRequests;
  /** This connection's writes of one event-loop turn, sent together (publishes, acks). */
  readonly writes = new TurnWrites();

  private constructor(
    readonly options: ResolvedNatsBackendOptions,
    readonly connection: NatsConnection,
    readonly jsm: JetStreamManager,
    readonly js: JetStreamClient,
    readonly state: ConnectionState,
    private readonly owned: boolean,
  ) {
    this.names = new NatsNames(options.prefix);
    this.logger = options.logger.child({ component: 'nats' });
    this.clock = options.clock;
    this.requests = new JetStreamRequests(connection, options.requestTimeoutMs, this.writes);
    // Acks in flight when the connection drops are lost: fail those publishes now (they retry).
    state.onDisconnect(() => this.requests.failAll('disconnected from NATS'));
  }

  /** Connects and prepares every stream, bucket and consumer the backend needs. */
  static async open(options: ResolvedNatsBackendOptions): Promise<NatsContext> {
    const owned = options.connection === undefined;
    let connection: NatsConnection;
    if (options.connection !== undefined) {
      connection = options.connection;
    } else {
      try {
        connection = await connect({
          servers: [...options.servers],
          ...options.auth,
          ...connectCredentials(options.credentials),
          name: options.connectionName,
          timeout: options.connectTimeoutMs,
          // Reconnect for ever: a broker restart must not end the service (SPEC §4).
          maxReconnectAttempts: -1,
          reconnectTimeWait: options.reconnectTimeWaitMs,
          waitOnFirstConnect: false,
          // No Error (with its stack) built in advance for every request: measurable per step.
          noAsyncTraces: true,
        });
      } catch (err) {
        const servers = redactServers(options.servers);
        // Credentials the server refuses are a setting to fix, not a server to wait for: a
        // service stops at start with them (exit code 78).
        if (isRefusedCredentials(err)) {
          throw new MultiAgentsError(
            ErrorCode.Unauthenticated,
            `NATS at ${servers} refused the credentials (NATS_USER and NATS_PASSWORD, NATS_TOKEN, the NKey or the creds file): ${toErrorInfo(err).message}`,
            { cause: err, retryable: false, details: { servers } },
          );
        }
        throw new MultiAgentsError(
          ErrorCode.FailedPrecondition,
          `cannot connect to NATS at ${servers}: ${toErrorInfo(err).message}`,
          { cause: err, retryable: true, details: { servers } },
        );
      }
    }
    try {
      let jsm: JetStreamManager;
      try {
        jsm = await jetstreamManager(connection, { timeout: options.requestTimeoutMs });
      } catch (err) {
        throw new FailedPreconditionError(
          `JetStream is not available on the NATS server (${toErrorInfo(err).message}): ` +
            'start nats-server with -js (or a jetstream {} block in its configuration)',
          { servers: redactServers(options.servers) },
        );
      }
      checkReplicas(connection, options.replicas);
      const js = jetstream(connection, { timeout: options.requestTimeoutMs });
      const logger = options.logger.child({ component: 'nats' });
      const context = new NatsContext(
        options,
        connection,
        jsm,
        js,
        new ConnectionState(connection, logger),
        owned,
      );
      await context.prepare();
      return context;
    } catch (err) {
      if (owned) await connection.close().catch(() => undefined);
      throw err;
    }
  }

  /** Runs `hook` first when the context closes (parts stop before the connection goes). */
  onClose(hook: () => Promise<void>): void {
    this.closeHooks.push(hook);
  }

  /** Closes the parts, then drains and closes the connection if the context opened it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const hook of this.closeHooks.reverse()) {
        await hook().catch((err: unknown) =>
          this.logger.warn({ err: toErrorInfo(err).message }, 'closing a part of the backend failed'),
        );
      }
      this.state.stop();
      // The acks and publishes still queued go before the connection is drained.
      this.writes.flush();
      this.requests.close();
      const connection = this.connection;
      if (this.owned && !connection.isClosed()) {
        // Drain flushes the acks written so far; while the server is unreachable it would wait for
        // a reconnect that may never come, so it gets a bound (unflushed acks mean redeliveries).
        const drained = await withinMs(connection.drain(), this.options.requestTimeoutMs);
        if (!drained || !connection.isClosed()) await connection.close().catch(() => undefined);
      }
    })();
    return this.closing;
  }

  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * One JetStream publish, awaited to its PubAck, tried up to `publishRetries` times while the
   * failure is transient (no answer, no responders while JetStream restarts, a disconnect with the
   * request out; each attempt first waits for a reconnect). A duplicate (the stream already held
   * the id) is counted and is not an error.
   */
  async publish(subject: string, data: Uint8Array, options: PublishOptions = {}): Promise<PublishAck> {
    const { publishRetries, requestTimeoutMs } = this.options;
    const attempts = options.retry === false ? 1 : publishRetries;
    let h = options.headers;
    const header = (key: string, value: string): void => {
      h ??= natsHeaders();
      h.set(key, value);
    };
    if (options.msgID !== undefined) header('Nats-Msg-Id', options.msgID);
    if (options.expectStream !== undefined) header('Nats-Expected-Stream', options.expectStream);
    if (options.expectLastSubjectSequence !== undefined) {
      header('Nats-Expected-Last-Subject-Sequence', String(options.expectLastSubjectSequence));
    }
    for (let attempt = 1; ; attempt += 1) {
      if (!this.state.isConnected && !(await this.state.whenConnected(requestTimeoutMs))) {
        if (attempt >= attempts) throw notConnected(subject);
        continue;
      }
      try {
        const ack = await this.requests.publish(subject, data, h);
        if (ack.duplicate) this.counters.duplicatePublishes += 1;
        return ack;
      } catch (err) {
        if (attempt >= attempts || !isTransient(err)) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 50 * 2 ** attempt)));
    }
  }

  /** Publishes a KV write: a value, or a delete marker with `operation: 'DEL'`. */
  kvWrite(
    bucket: string,
    key: string,
    data: Uint8Array,
    options: { expectedRevision?: number; operation?: 'DEL'; retry?: boolean } = {},
  ): Promise<PublishAck> {
    let h: MsgHdrs | undefined;
    if (options.operation !== undefined) {
      h = natsHeaders();
      h.set(KV_OPERATION_HEADER, options.operation);
    }
    return this.publish(this.names.kvSubject(bucket, key), data, {
      ...(h === undefined ? {} : { headers: h }),
      ...(options.expectedRevision === undefined
        ? {}
        : { expectLastSubjectSequence: options.expectedRevision }),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
    });
  }

  /**
   * A KV bucket made on first use with the backend's replicas and storage (an existing one, made
   * by another process, is used as it is); a key not written for `maxAgeMs` is dropped. Processes
   * creating one bucket at the same moment all get it (the server refuses all but one creation
   * with "subjects overlap": the others open what it made). A failed open is not remembered: the
   * next call tries again (the server may have been away).
   */
  lazyBucket(bucket: string, maxAgeMs: number): () => Promise<KV> {
    let kv: Promise<KV> | undefined;
    const open = async (): Promise<KV> => {
      try {
        return await this.openBucket(bucket, { ttl: maxAgeMs });
      } catch (err) {
        kv = undefined;
        throw new FailedPreconditionError(
          `cannot open or create bucket ${bucket}: ${toErrorInfo(err).message}`,
          { bucket },
        );
      }
    };
    return () => (kv ??= open());
  }

  /**
   * Opens a KV bucket with this backend's settings, creating it when missing (`Kvm.create` opens
   * one that exists). The server refuses all but one of simultaneous creations ("subjects
   * overlap" or "stream name in use"): the others try again and find it, as they do after a
   * timeout or no responders.
   */
  private async openBucket(bucket: string, extra: Partial<KvOptions> = {}): Promise<KV> {
    const o = this.options;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await new Kvm(this.js).create(bucket, {
          history: 1,
          replicas: o.replicas,
          storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
          timeout: o.requestTimeoutMs,
          allow_direct: o.replicas === 1,
          description: `MultiAgents ${bucket}`,
          ...extra,
        });
      } catch (err) {
        const raced = isApiError(err, SUBJECTS_OVERLAP, STREAM_NAME_IN_USE);
        if (attempt < BUCKET_OPEN_TRIES && (raced || isTransient(err))) {
          await delay(50 * attempt);
          continue;
        }
        throw err;
      }
    }
  }

  /** The current value of a key (undefined when it has none, or only a delete marker). */
  async kvGet(bucket: string, key: string): Promise<KvRead | undefined> {
    const stored = await this.kvMessage(bucket, { last_by_subj: this.names.kvSubject(bucket, key) });
    return stored?.read;
  }

  /**
   * Every current value of the keys `filter` matches (a KV key filter: `*` and `>` allowed), in
   * write order, delete markers left out: one message get per key plus one, no consumer (a key
   * filter read through a consumer costs the server a consumer made and dropped per read).
   */
  async kvScan(bucket: string, filter: string): Promise<KvRead[]> {
    const next_by_subj = this.names.kvSubject(bucket, filter);
    const found: KvRead[] = [];
    for (let seq = 0; ;) {
      const stored = await this.kvMessage(bucket, { seq, next_by_subj });
      if (stored === undefined) return found;
      seq = stored.seq + 1;
      if (stored.read !== undefined) found.push(stored.read);
    }
  }

  /**
   * One message of a bucket's stream, as a read: undefined for none or a delete marker. A direct
   * get may be answered by a lagging replica: with replicas the leader answers.
   */
  private async kvMessage(
    bucket: string,
    query: DirectQuery,
  ): Promise<{ seq: number; read: KvRead | undefined } | undefined> {
    const stream = `KV_${bucket}`;
    if (this.options.replicas === 1) {
      const stored = await this.requests.directGet(stream, query);
      if (stored === null) return undefined;
      return { seq: stored.seq, read: kvRead(stored.seq, stored.data, stored.headers, stored.storedAt) };
    }
    const stored = await this.jsm.streams.getMessage(stream, query);
    if (stored === null) return undefined;
    return { seq: stored.seq, read: kvRead(stored.seq, stored.data, stored.header, stored.time.getTime()) };
  }

  /**
   * Removes a subject's messages from a stream (no delete marker left). With `beforeSeq`, only
   * those below it: a compare-and-delete that leaves a newer write alone. A JetStream API call:
   * for maintenance, never for the hot path.
   */
  async purgeSubject(stream: string, subject: string, beforeSeq?: number): Promise<number> {
    const response = await this.jsm.streams.purge(stream, {
      filter: subject,
      ...(beforeSeq === undefined ? {} : { seq: beforeSeq }),
    });
    return response.purged;
  }

  // ---- setup -------------------------------------------------------------------------------

  private async prepare(): Promise<void> {
    const o = this.options;
    const storage = o.storage === 'memory' ? StorageType.Memory : StorageType.File;
    const window = o.duplicateWindowMs * NS_PER_MS;
    await this.ensureStream(
      {
        name: this.names.stream,
        subjects: [...this.names.streamSubjects],
        // Not interest (a message published before its group's consumer exists would be dropped,
        // and startFrom: 'earliest' promises it is kept), not workqueue (several groups read one
        // topic). A full stream refuses publishes instead of dropping unconsumed messages.
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.New,
        storage,
        num_replicas: o.replicas,
        max_age: o.maxAgeMs * NS_PER_MS,
        max_bytes: o.maxBytes,
        max_msgs: o.maxMsgs,
        duplicate_window: o.maxAgeMs > 0 ? Math.min(window, o.maxAgeMs * NS_PER_MS) : window,
      },
      RetentionPolicy.Limits,
    );
    const deadWindow =
      o.deadLetterMaxAgeMs > 0 ? Math.min(o.duplicateWindowMs, o.deadLetterMaxAgeMs) : o.duplicateWindowMs;
    await this.ensureStream(
      {
        name: this.names.deadLetterStream,
        subjects: [...this.names.deadLetterSubjects],
        retention: RetentionPolicy.Limits,
        // Full: dead-lettering fails and the message stays pending (retried), never an old one dropped.
        discard: DiscardPolicy.New,
        storage,
        num_replicas: o.replicas,
        max_age: o.deadLetterMaxAgeMs * NS_PER_MS,
        duplicate_window: deadWindow * NS_PER_MS,
      },
      RetentionPolicy.Limits,
    );
    await this.ensureStream(
      {
        name: this.names.timerStream,
        subjects: [this.names.timerSubject],
        // A wake-up is gone once acknowledged (its timer fired or was found stale).
        retention: RetentionPolicy.Workqueue,
        discard: DiscardPolicy.New,
        storage,
        num_replicas: o.replicas,
        duplicate_window: window,
      },
      RetentionPolicy.Workqueue,
    );
    await this.ensureTimerConsumer();
    for (const bucket of [this.names.runsBucket, this.names.definitionsBucket]) {
      try {
        await this.openBucket(bucket);
      } catch (err) {
        throw new FailedPreconditionError(
          `cannot open or create bucket ${bucket} with ${o.replicas} replica(s): ${toErrorInfo(err).message}`,
          { bucket, replicas: o.replicas },
        );
      }
    }
    this.checkMaxPayload();
  }

  /**
   * Creates the stream, or checks an existing one. Retention, discard policy and subjects decide
   * correctness and are required; differing limits are only logged (changing them is an
   * operator's decision, and two processes with different options must not flip them back and forth).
   */
  private async ensureStream(
    config: Partial<StreamConfig> & { name: string },
    retention: RetentionPolicy,
  ): Promise<void> {
    const jsm = this.jsm;
    let existing: StreamConfig;
    try {
      existing = (await jsm.streams.info(config.name)).config;
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      try {
        await jsm.streams.add(config);
        return;
      } catch (addErr) {
        const replicas = config.num_replicas ?? 1;
        const servers = clusterSize(this.connection);
        if (
          replicas > servers &&
          isApiError(addErr, NO_SUITABLE_PEERS, INSUFFICIENT_RESOURCES, REPLICAS_NOT_SUPPORTED)
        ) {
          // More replicas than servers: a setting to fix, not a node to wait for.
          throw replicasError(replicas, servers, toErrorInfo(addErr).message);
        }
        // Another process creating it at the same moment makes the server refuse this one with
        // "stream name in use" or "subjects overlap" (its subjects): then check theirs. An overlap
        // with a stream of another name is a configuration problem.
        const raced = isApiError(addErr, STREAM_NAME_IN_USE, SUBJECTS_OVERLAP)
          ? await jsm.streams.info(config.name).catch(() => undefined)
          : undefined;
        if (raced === undefined) {
          throw new FailedPreconditionError(
            `cannot create stream ${config.name} (subjects ${String(config.subjects)}): ${toErrorInfo(addErr).message}`,
            { stream: config.name },
          );
        }
        existing = raced.config;
      }
    }
    const problems: string[] = [];
    if (existing.retention !== retention)
      problems.push(`retention is ${existing.retention}, must be ${retention}`);
    if (existing.discard !== DiscardPolicy.New) problems.push(`discard is ${existing.discard}, must be new`);
    for (const subject of config.subjects ?? []) {
      if (!existing.subjects.includes(subject)) problems.push(`subjects must include ${subject}`);
    }
    if (problems.length > 0) {
      throw new FailedPreconditionError(
        `stream ${config.name} exists with another configuration: ${problems.join('; ')}`,
        { stream: config.name, problems },
      );
    }
    const differing = (
      ['max_age', 'max_bytes', 'max_msgs', 'duplicate_window', 'num_replicas'] as const
    ).filter((key) => config[key] !== undefined && existing[key] !== config[key]);
    if (differing.length > 0) {
      this.logger.warn(
        {
          stream: config.name,
          differing: Object.fromEntries(
            differing.map((k) => [k, { existing: existing[k], wanted: config[k] }]),
          ),
        },
        'stream exists with other limits; keeping them',
      );
    }
  }

  /**
   * The timer stream's one durable consumer. `max_ack_pending` is unlimited on purpose: a timer
   * that is not due yet is handed back with a delay and stays ack-pending until then, so any cap
   * would cap how many future timers may wait (and stall due ones behind them). `max_deliver` is
   * unlimited too: a long sleep comes back many times before it is due.
   */
  private async ensureTimerConsumer(): Promise<void> {
    const stream = this.names.timerStream;
    const name = this.names.timerConsumer;
    const ackWait = this.options.timerAckWaitMs * NS_PER_MS;
    let existing: ConsumerConfig | undefined;
    try {
      existing = (await this.jsm.consumers.info(stream, name)).config;
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
    }
    if (existing === undefined) {
      try {
        await this.jsm.consumers.add(stream, {
          durable_name: name,
          ack_policy: AckPolicy.Explicit,
          ack_wait: ackWait,
          max_deliver: -1,
          max_ack_pending: -1,
          deliver_policy: DeliverPolicy.All,
          replay_policy: ReplayPolicy.Instant,
        });
        return;
      } catch (err) {
        // Created concurrently by another process: check theirs below.
        existing = (
          await this.jsm.consumers.info(stream, name).catch(() => {
            throw err;
          })
        ).config;
      }
    }
    if (existing.ack_wait !== ackWait || existing.max_ack_pending !== -1) {
      await this.jsm.consumers.update(stream, name, { ack_wait: ackWait, max_ack_pending: -1 });
    }
  }

  /**
   * The codec accepts envelopes up to `maxBytes`; the server refuses messages (headers included)
   * above its `max_payload` (1 MiB by default, the codec's default limit too). Said once at start
   * rather than discovered on the first large envelope.
   */
  private checkMaxPayload(): void {
    const maxPayload = this.connection.info?.max_payload;
    const maxEnvelope = this.options.codec?.maxBytes ?? MAX_ENVELOPE_BYTES;
    if (maxPayload !== undefined && maxEnvelope + PUBLISH_HEADER_ALLOWANCE > maxPayload) {
      this.logger.warn(
        { maxPayload, maxEnvelopeBytes: maxEnvelope },
        "envelopes near the codec's size limit exceed the server's max_payload and will be refused; " +
          'lower codec.maxBytes or raise max_payload',
      );
    }
  }
}

/** True when `promise` settled (either way) within `ms`; never rejects. */
export async function withinMs(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A failure that retrying can cure: no answer in time, or nobody answering yet (JetStream starting). */
export function isTransient(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return false;
  if ((err instanceof Error && err.name === 'TimeoutError') || isNoResponders(err)) return true;
  return err instanceof JetStreamError && /timeout/i.test(err.message);
}

/**
 * `request` (one KV read or compare-and-set write through the client), tried again while nobody
 * answers it: the server hands out a stream another process just created before the stream
 * listens on its subjects, so its first requests can meet no responders. Nothing was read or
 * written then, which makes trying again safe; any other failure is the caller's.
 */
export async function untilAnswered<T>(request: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await request();
    } catch (err) {
      if (attempt >= KV_NO_RESPONDER_TRIES || !isNoResponders(err)) throw err;
    }
    await delay(25 * attempt);
  }
}

/**
 * Nobody listened on the subject: no stream (yet) took the request, so it had no effect.
 * JetStreamNotEnabled (the client's name for it) extends Error, not JetStreamError: matched by name.
 */
function isNoResponders(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (
      e.name === 'NoRespondersError' ||
      e.name === 'JetStreamNotEnabled' ||
      /no responders/i.test(e.message)
    ) {
      return true;
    }
  }
  return false;
}

/** A stored KV message as a read, or undefined for a delete marker. */
function kvRead(
  seq: number,
  data: Uint8Array,
  headers: MsgHdrs | undefined,
  writtenAt: number,
): KvRead | undefined {
  const operation = headers?.get(KV_OPERATION_HEADER);
  if (operation === 'DEL' || operation === 'PURGE') return undefined;
  return { revision: seq, data, writtenAt };
}

/** `kv.create` on a key that holds a value: the client reports it as a wrong last sequence, or so. */
export function isKeyExists(err: unknown): boolean {
  return err instanceof Error && /wrong last sequence|key exists/i.test(err.message);
}

/** True when `err` is a JetStream API error with one of `codes`. */
export function isApiError(err: unknown, ...codes: number[]): boolean {
  // By code, not instanceof alone: the KV package may load its own copy of the JetStream classes.
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return (err instanceof JetStreamApiError || typeof code === 'number') && codes.includes(code as number);
}

/** The server refused a compare-and-set because the subject's last sequence was not the expected one. */
export function isWrongRevision(err: unknown): boolean {
  return isApiError(
    err,
    JetStreamApiCodes.StreamWrongLastSequence,
    JetStreamApiCodes.StreamWrongLastSequenceUnknown,
  );
}

/** The server refused the connection's credentials (a wrong user, password, token, NKey or JWT). */
function isRefusedCredentials(err: unknown): boolean {
  const name = err instanceof Error ? err.name : '';
  return (
    name === 'AuthorizationError' ||
    /authorization violation|authentication (expired|timeout|revoked)|user authentication/i.test(
      toErrorInfo(err).message,
    )
  );
}

/**
 * A message larger than the server takes: the client refuses it before sending, when it is above
 * the connection's `max_payload` (InvalidArgumentError "'payload' max_payload size exceeded");
 * the server, when a stream's message size limit is below it ("message size exceeds maximum").
 * Sending it again fails the same way (SPEC §6: too large is RESOURCE_EXHAUSTED).
 */
export function isTooLarge(err: unknown): boolean {
  const message = toErrorInfo(err).message;
  return /max_payload|maximum (payload|message size)|message size exceeds/i.test(message);
}

/**
 * A NATS failure as a MultiAgents error with a stable code: TIMEOUT (retryable) when the server
 * did not answer, RESOURCE_EXHAUSTED (not retryable) when a stream or the server is full or the
 * message is too large, INTERNAL otherwise.
 */
export function natsError(
  what: string,
  err: unknown,
  details: Record<string, unknown> = {},
): MultiAgentsError {
  if (err instanceof MultiAgentsError) return err;
  const message = toErrorInfo(err).message;
  if (isTooLarge(err))
    return new ResourceExhaustedError(`${what}: ${message}`, { ...details, reason: 'too_large' });
  if (isApiError(err, ...STREAM_FULL_CODES))
    return new ResourceExhaustedError(`${what}: ${message}`, details);
  const name = err instanceof Error ? err.name : '';
  if (
    isTransient(err) ||
    /^(NoResponders|ClosedConnection|DrainingConnection|Connection)(Error)?$/.test(name) ||
    /no responders|timeout|connection (closed|draining)|not connected/i.test(message)
  ) {
    return new MultiAgentsError(
      ErrorCode.Timeout,
      `${what}: NATS did not answer (${message}); the connection keeps reconnecting`,
      { cause: err, retryable: true, details },
    );
  }
  return new MultiAgentsError(ErrorCode.Internal, `${what}: ${message}`, {
    cause: err,
    retryable: true,
    details,
  });
}

function notConnected(subject: string): Error {
  return Object.assign(new Error(`not connected to NATS (publishing to ${subject})`), {
    name: 'TimeoutError',
  });
}

/** The servers for messages and logs: user names kept, passwords and tokens hidden. */
export function redactServers(servers: readonly string[]): string {
  return servers
    .map((server) => {
      try {
        const url = new URL(server);
        if (url.password) url.password = '***';
        else if (url.username) url.username = '***';
        return url.toString().replace(/\/$/, '');
      } catch {
        return server.replace(/\/\/[^@/]*@/, '//***@');
      }
    })
    .join(', ');
}

/** The connect options of {@link NatsCredentials}: an authenticator and TLS files. */
function connectCredentials(credentials: NatsCredentials | undefined): Partial<ConnectionOptions> {
  if (credentials === undefined) return {};
  const out: { -readonly [K in keyof ConnectionOptions]?: ConnectionOptions[K] } = {};
  if (credentials.user !== undefined) {
    out.user = credentials.user;
    out.pass = credentials.pass ?? '';
  }
  if (credentials.token !== undefined) out.token = credentials.token;
  if (credentials.nkeySeed !== undefined) {
    out.authenticator = nkeyAuthenticator(new TextEncoder().encode(credentials.nkeySeed.trim()));
  }
  if (credentials.credsFile !== undefined) {
    out.authenticator = credsAuthenticator(new Uint8Array(readFileSync(credentials.credsFile)));
  }
  if (credentials.tls !== undefined) {
    out.tls = {
      ...(credentials.tls.caFile === undefined ? {} : { caFile: credentials.tls.caFile }),
      ...(credentials.tls.certFile === undefined ? {} : { certFile: credentials.tls.certFile }),
      ...(credentials.tls.keyFile === undefined ? {} : { keyFile: credentials.tls.keyFile }),
    };
  }
  return out;
}
