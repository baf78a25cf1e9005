import { randomBytes } from 'node:crypto';
import {
  ErrorCode,
  FailedPreconditionError,
  MultiAgentsError,
  PoisonMessageError,
  RunNotFoundError,
  RunState,
  Topics,
  ValidationError,
  encodeEnvelope,
  isTerminalRunState,
  type Envelope,
  type Run,
} from '@multiagents/contracts';
import {
  decodeRunRecord,
  encodeRunMeta,
  encodeTransitionParts,
  parseTimerId,
  type CreateRunResult,
  type Delivery,
  type RunCounts,
  type RunFilter,
  type RunPage,
  type RunRevision,
  type RunStore,
  type StoredRun,
  type Timer,
  type Transition,
} from '@multiagents/core';
import { COMMIT_REFUSED, COMMIT_UNKNOWN_RUN, COMMIT_WRITTEN } from './lua/commit-script';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';
import { RedisDelivery } from './redis-delivery';
import { decodeRunCursor, encodeRunCursor, newerFirst, type RunIndexKey } from './run-index-cursor';
import type { ScriptArg } from './scripts';
import { TurnBatcher } from './turn-batcher';

/** Index entries read per partition and round trip by list() (at least the page size plus one). */
const LIST_BATCH_MIN = 16;
const LIST_BATCH_MAX = 500;
/** Index entries one prune round (one script call) looks at, per partition. */
const PRUNE_BATCH = 500;
/**
 * Prune rounds one pass makes at most, per partition: a pass sweeps up to 50,000 index entries of
 * each partition, so the expired runs of a busy partition go as fast as they come, and a pass over
 * a huge index stops there and goes on from that point the next time.
 */
const PRUNE_MAX_ROUNDS = 100;
/** Script arguments per commit call: keeps ARGV well below Redis' and Lua's limits. */
const MAX_COMMIT_ARGS = 4_000;
/** Most run reads one pipeline carries. */
const MAX_READS_PER_CALL = 500;

/** One queued run read: its hash, and where its fields (or what Redis said instead) go once read. */
interface PendingRead {
  readonly key: string;
  fields?: Record<string, string>;
  error?: unknown;
}

/** One transition queued for its partition's next `commit.lua` call, and what came back. */
interface PendingCommit {
  readonly runKey: string;
  /** Its block up to the run key index: mode, txId, revisions, state, header, ttl, ack, create fields. */
  readonly head: readonly ScriptArg[];
  readonly steps: readonly (readonly [name: string, record: string])[];
  readonly commands: readonly { readonly stream: string; readonly data: Buffer }[];
  /** Its block after the commands: event, schedule, cancel. */
  readonly tail: readonly ScriptArg[];
  reply: [number, number?] | undefined;
  error: unknown;
}

/** How many script arguments a transition's block takes. */
function commitWeight(pending: PendingCommit): number {
  return pending.head.length + 3 + 2 * (pending.steps.length + pending.commands.length) + pending.tail.length;
}

/**
 * The KEYS and ARGV of one `commit.lua` call for `batch`, all in `partition` (see the script's
 * header): the partition's shared keys, then every run and command stream once, named by index.
 */
function commitCall(
  connection: RedisConnection,
  partition: number,
  batch: readonly PendingCommit[],
): [keys: string[], args: ScriptArg[]] {
  const { keys: layout, options } = connection;
  const keys = [
    layout.base(partition),
    layout.timers(partition),
    layout.stream(partition, Topics.events),
    layout.stream(partition, Topics.results),
  ];
  const indexes = new Map<string, number>();
  const indexOf = (key: string): number => {
    let index = indexes.get(key);
    if (index === undefined) {
      // Lua counts KEYS from 1: a key's index is the length once it is in.
      index = keys.push(key);
      indexes.set(key, index);
    }
    return index;
  };
  const args: ScriptArg[] = [layout.partitions, options.eventsMaxLen, batch.length];
  for (const pending of batch) {
    for (const arg of pending.head) args.push(arg);
    args.push(indexOf(pending.runKey), pending.steps.length);
    for (const [name, record] of pending.steps) args.push(name, record);
    args.push(pending.commands.length);
    for (const { stream, data } of pending.commands) args.push(indexOf(stream), data);
    for (const arg of pending.tail) args.push(arg);
  }
  return [keys, args];
}

/**
 * Revision tokens: a random part per store instance and a counter. Unique without a random call
 * per write; a token is never handed out twice, so a broker that lost a write (and took another
 * with the same version number) still refuses a decision made on the lost one.
 */
class RevisionTokens {
  private readonly base = `${randomBytes(9).toString('base64url')}.`;
  private seq = 0;

  next(): string {
    this.seq += 1;
    return `${this.base}${this.seq.toString(36)}`;
  }
}

interface IndexCursor {
  /** Entries read from this partition's index, not merged yet, newest first. */
  buffer: RunIndexKey[];
  /** The last key read from this partition's index: the next read starts after it. */
  after: RunIndexKey | undefined;
  done: boolean;
}

/**
 * The {@link RunStore} on Redis: each transition is one block of `commit.lua` (see its header),
 * which checks the revision, writes the run's header and changed step records, appends the
 * commands and the lifecycle event to the run's partition's streams, adds and removes its timers,
 * moves it between state indexes when its state changed, sets or clears its TTL, and acknowledges
 * the result that caused it — all or nothing. The transitions of one event-loop turn in one
 * partition share one call (one round trip). `create` is the same script in create-if-absent mode.
 *
 * A run is a hash (`m` meta, `h` header, `s:<step>` records, `v`, `r`, `st`, `c`); the context is
 * rebuilt from the records on read. Terminal runs expire after `terminalRunTtlMs`; their index
 * entries are dropped by list() when it meets them and by the periodic pruning passes. Timers
 * live in one zset per partition (an id says everything about its timer); claims take them under
 * a lease, partitions in turn.
 *
 * @example
 * const { runs } = createRedisBackend({ url: 'redis://127.0.0.1:6379' });
 * const page = await runs.list({ state: 'running' }, 50);
 */
export class RedisRunStore implements RunStore {
  /** The connection this store shares with its backend's bus. */
  readonly connection: RedisConnection;
  private readonly owned: boolean;
  private readonly tokens = new RevisionTokens();
  /** Where the next timer claim starts, so that no partition starves. */
  private nextTimerPartition = 0;
  /**
   * The lease end (the score claim-timers.lua set) of each timer this store claimed, until it is
   * completed or its lease is long over: completeTimers removes a timer only while it still has
   * that score, so a timer a commit scheduled again after the claim is not lost.
   */
  private readonly timerLeases = new Map<string, number>();
  /** Per partition, the rank in its `all` index where the next prune round starts. */
  private readonly pruneRanks: number[];
  private readonly pruneTimer: NodeJS.Timeout | undefined;
  private pruning: Promise<number> | undefined;
  /** Each partition's transitions of one event-loop turn, sent as one script call. */
  private readonly commits = new TurnBatcher<PendingCommit>({
    send: (slot, batch) => this.sendCommits(Number(slot), batch),
    failure: (_slot, err) => err,
    weight: commitWeight,
    maxWeight: MAX_COMMIT_ARGS,
  });
  /**
   * Each partition's run reads of one event-loop turn, sent as one pipeline: an orchestrator that
   * did not write a run itself (another replica started it, or it restarted) reads it on its first
   * result, and one socket write per read cost more than the read.
   */
  private readonly reads = new TurnBatcher<PendingRead>({
    send: (_slot, batch) => this.sendReads(batch),
    failure: (_slot, err) => this.connection.redisError('read run', err),
    weight: () => 1,
    maxWeight: MAX_READS_PER_CALL,
  });
  private closed = false;

  /** Uses `connection` (shared with the bus; not closed by this store) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
    this.pruneRanks = new Array<number>(this.connection.keys.partitions).fill(0);
    const interval = this.connection.options.indexPruneIntervalMs;
    if (interval > 0) {
      this.pruneTimer = setInterval(() => {
        this.pruneIndexes().catch((err: unknown) =>
          this.connection.logger.warn({ err: String(err) }, 'pruning the run indexes failed'),
        );
      }, interval);
      this.pruneTimer.unref();
    }
  }

  async create(transition: Transition): Promise<CreateRunResult> {
    this.assertOpen();
    const run = transition.run;
    const revision = this.tokens.next();
    const meta: ScriptArg[] = [encodeRunMeta(run), run.createdAt, run.workflowId];
    const reply = await this.write('create', '', revision, transition, meta);
    if (reply[0] === COMMIT_WRITTEN) {
      return { created: true, stored: { run, version: 1, revision } };
    }
    // Another start with the same idempotency key got there first: hand back what it wrote.
    const stored = await this.get(run.txId);
    if (stored === undefined) {
      throw new FailedPreconditionError(
        `run ${run.txId} exists but could not be read back (it just expired?)`,
        {
          txId: run.txId,
        },
      );
    }
    return { created: false, stored };
  }

  async commit(expected: RunRevision, transition: Transition): Promise<RunRevision | undefined> {
    this.assertOpen();
    const run = transition.run;
    const revision = this.tokens.next();
    const reply = await this.write('commit', expected.revision, revision, transition, ['', '', '']);
    const [code, version] = reply;
    if (code === COMMIT_UNKNOWN_RUN) throw new RunNotFoundError(run.txId);
    if (code === COMMIT_REFUSED) {
      this.connection.counters.staleCommits += 1;
      return undefined;
    }
    return { version: Number(version), revision };
  }

  async get(txId: string): Promise<StoredRun | undefined> {
    this.assertOpen();
    await this.connection.ready();
    const { keys } = this.connection;
    return decodeStoredRun(await this.read(keys.partitionOf(txId), txId));
  }

  /** A run's hash fields (none when it does not exist), read with the others of this turn. */
  private async read(partition: number, txId: string): Promise<Record<string, string>> {
    const read: PendingRead = { key: this.connection.keys.run(partition, txId) };
    await this.reads.add(String(partition), read);
    if (read.error !== undefined) throw this.connection.redisError('read run', read.error);
    return read.fields ?? {};
  }

  /**
   * One pipeline for the batch (a lone read as a plain command). A read Redis refuses (a key of
   * another type where the run should be) fails alone; a batch that could not be sent fails whole.
   */
  private async sendReads(batch: readonly PendingRead[]): Promise<void> {
    // Sent a turn after the reads were queued: the connection may have closed since.
    this.connection.assertOpen();
    const { client } = this.connection;
    if (batch.length === 1) {
      const [read] = batch as [PendingRead];
      read.fields = await client.hgetall(read.key);
      return;
    }
    const pipeline = client.pipeline();
    for (const read of batch) pipeline.hgetall(read.key);
    const replies = (await pipeline.exec()) ?? [];
    batch.forEach((read, i) => {
      const [err, fields] = replies[i] ?? [new Error('no reply')];
      if (err) read.error = err;
      else read.fields = fields as Record<string, string>;
    });
  }

  async countByState(): Promise<RunCounts> {
    this.assertOpen();
    await this.connection.ready();
    const { keys, client } = this.connection;
    const states = Object.values(RunState);
    // One pipeline per partition: its indexes share a hash tag, so it stays in one Cluster slot.
    const replies = await this.connection.call('count by state', () =>
      Promise.all(
        Array.from({ length: keys.partitions }, (_, p) => {
          const pipeline = client.pipeline();
          for (const state of states) pipeline.zcard(keys.indexState(p, state));
          return pipeline.exec();
        }),
      ),
    );
    const counts: Partial<Record<RunState, number>> = {};
    for (const partition of replies) {
      (partition ?? []).forEach(([err, value], i) => {
        if (err) throw err;
        const state = states[i] as RunState;
        const n = Number(value);
        if (n > 0) counts[state] = (counts[state] ?? 0) + n;
      });
    }
    return counts;
  }

  async list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
    this.assertOpen();
    if (!Number.isInteger(limit) || limit < 1)
      throw new ValidationError('limit', ['must be an integer >= 1']);
    const start = cursor === undefined ? undefined : decodeRunCursor(cursor);
    await this.connection.ready();
    const { keys, scripts } = this.connection;
    const indexOf = (partition: number): string =>
      filter.state !== undefined
        ? keys.indexState(partition, filter.state)
        : filter.workflowId !== undefined
          ? keys.indexWorkflow(partition, filter.workflowId)
          : keys.indexAll(partition);
    const max = filter.createdBefore === undefined ? '+inf' : String(filter.createdBefore);
    const min = filter.createdAfter === undefined ? '-inf' : String(filter.createdAfter);
    const cursors: IndexCursor[] = Array.from({ length: keys.partitions }, () => ({
      buffer: [],
      after: start,
      done: false,
    }));

    const runs: Run[] = [];
    let last: RunIndexKey | undefined;
    let more = false;
    while (!more) {
      const want = limit + 1 - runs.length;
      const batch = Math.min(LIST_BATCH_MAX, Math.max(LIST_BATCH_MIN, want));
      // Take the next `want` keys in merged order; a partition whose buffer ran dry is read again
      // before anything older than its last key is taken from another one.
      const picked: Array<{ key: RunIndexKey; partition: number }> = [];
      while (picked.length < want) {
        const empty = cursors.flatMap((c, p) => (!c.done && c.buffer.length === 0 ? [p] : []));
        if (empty.length > 0) {
          const pages = await this.connection.call('list', () =>
            Promise.all(
              empty.map((p) => {
                const after = (cursors[p] as IndexCursor).after;
                return scripts.indexPage(indexOf(p), [
                  max,
                  min,
                  after === undefined ? '' : after.createdAt,
                  after === undefined ? '' : after.txId,
                  batch,
                ]);
              }),
            ),
          );
          empty.forEach((p, i) => {
            const c = cursors[p] as IndexCursor;
            const flat = pages[i] ?? [];
            for (let j = 0; j + 1 < flat.length; j += 2) {
              c.buffer.push({ txId: String(flat[j]), createdAt: Number(flat[j + 1]) });
            }
            if (c.buffer.length > 0) c.after = c.buffer[c.buffer.length - 1];
            // A short page is the index's end: what is buffered is all there is.
            if (flat.length / 2 < batch) c.done = true;
          });
        }
        let best = -1;
        cursors.forEach((c, p) => {
          const head = c.buffer[0];
          if (head === undefined) return;
          const current = best < 0 ? undefined : (cursors[best] as IndexCursor).buffer[0];
          if (current === undefined || newerFirst(head, current) < 0) best = p;
        });
        if (best < 0) break;
        picked.push({ key: (cursors[best] as IndexCursor).buffer.shift() as RunIndexKey, partition: best });
      }
      if (picked.length === 0) break;

      const read = await Promise.all(picked.map(({ key, partition }) => this.read(partition, key.txId)));
      const expired: Array<{ key: RunIndexKey; partition: number }> = [];
      picked.forEach((pick, i) => {
        const stored = decodeStoredRun(read[i] ?? {});
        if (stored === undefined) {
          expired.push(pick);
          return;
        }
        const run = stored.run;
        if (filter.state !== undefined && run.state !== filter.state) return;
        if (filter.workflowId !== undefined && run.workflowId !== filter.workflowId) return;
        if (more) return;
        // One match past a full page proves there is a next page (no empty last page).
        if (runs.length === limit) {
          more = true;
          return;
        }
        runs.push(run);
        last = pick.key;
      });
      if (expired.length > 0) await this.dropExpired(expired);
      if (picked.length < want) break;
    }
    return more && last !== undefined ? { runs, nextCursor: encodeRunCursor(last) } : { runs };
  }

  /**
   * Drops the index entries of runs list() met expired (terminal runs have a TTL) from every
   * index, not only the one it read: an entry left in a state or workflow index would be counted
   * by countByState forever, since pruning sweeps the `all` index only.
   */
  private async dropExpired(expired: ReadonlyArray<{ key: RunIndexKey; partition: number }>): Promise<void> {
    const { keys, client, scripts, counters } = this.connection;
    const byPartition = new Map<number, string[]>();
    for (const { key, partition } of expired) {
      byPartition.set(partition, [...(byPartition.get(partition) ?? []), key.txId]);
    }
    const removed = await this.connection.call('list', async () => {
      const workflows = await client.smembers(keys.definitionIds());
      return Promise.all(
        [...byPartition].map(([partition, txIds]) =>
          scripts.dropExpired(keys.base(partition), [txIds.length, ...txIds, ...workflows]),
        ),
      );
    });
    counters.expiredIndexEntries += removed.reduce((sum, n) => sum + Number(n), 0);
  }

  async claimDueTimers(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    this.assertOpen();
    const problems: string[] = [];
    if (!Number.isFinite(now)) problems.push('now must be a number');
    if (!Number.isInteger(limit) || limit < 1) problems.push('limit must be an integer >= 1');
    if (!Number.isFinite(leaseMs) || leaseMs <= 0) problems.push('leaseMs must be a number > 0');
    if (problems.length > 0) throw new ValidationError('claimDueTimers', problems);
    await this.connection.ready();
    const { keys, scripts } = this.connection;
    const leaseEnd = now + leaseMs;
    this.forgetLeases(now - leaseMs);
    const partitions = keys.partitions;
    const first = this.nextTimerPartition;
    this.nextTimerPartition = (first + 1) % partitions;
    // Partitions in turn from a rotating start; the limit is shared out so that one busy
    // partition cannot take it all while others have due timers, and rounds repeat while some
    // partition filled its share and room is left.
    let active = Array.from({ length: partitions }, (_, i) => (first + i) % partitions);
    let remaining = limit;
    const claimed: Timer[] = [];
    while (remaining > 0 && active.length > 0) {
      const share = Math.floor(remaining / active.length);
      const extra = remaining % active.length;
      const asks = active
        .map((partition, i) => ({ partition, quota: share + (i < extra ? 1 : 0) }))
        .filter((ask) => ask.quota > 0);
      const replies = await this.connection.call('claimDueTimers', () =>
        Promise.all(
          asks.map(({ partition, quota }) =>
            scripts.claimTimers(keys.timers(partition), now, quota, leaseEnd),
          ),
        ),
      );
      const full = new Set<number>();
      const junk: Array<[number, string]> = [];
      asks.forEach(({ partition, quota }, i) => {
        const flat = replies[i] ?? [];
        for (let j = 0; j + 1 < flat.length; j += 2) {
          const id = String(flat[j]);
          const timer = parseTimerId(id, Number(flat[j + 1]));
          if (timer === undefined) junk.push([partition, id]);
          else {
            claimed.push(timer);
            this.timerLeases.set(id, leaseEnd);
          }
          remaining -= 1;
        }
        if (flat.length / 2 >= quota) full.add(partition);
      });
      if (junk.length > 0) {
        // Not a timer id this backend writes: it can never fire, so it goes.
        await this.connection.call('claimDueTimers', () =>
          Promise.all(junk.map(([partition, id]) => this.connection.client.zrem(keys.timers(partition), id))),
        );
      }
      // Partitions not asked this round (share 0) stay; those that gave less than asked are done.
      const asked = new Set(asks.map((ask) => ask.partition));
      active = active.filter((partition) => !asked.has(partition) || full.has(partition));
    }
    return claimed.sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Removes the timers this store claimed, each only while its score is still the lease end its
   * claim set (`complete-timers.lua`): a commit may have scheduled the same timer id again since
   * (a heartbeat moved its deadline while its stale firing was handled), and that one must fire.
   * A timer this store holds no lease for (not claimed here, or long ago) is left: it comes back
   * when its lease ends and is claimed again, at least once as the port promises.
   */
  async completeTimers(timerIds: readonly string[]): Promise<void> {
    this.assertOpen();
    if (timerIds.length === 0) return;
    await this.connection.ready();
    const { keys, scripts } = this.connection;
    const byPartition = new Map<number, ScriptArg[]>();
    for (const id of timerIds) {
      const leaseEnd = this.timerLeases.get(id);
      const timer = parseTimerId(id, 0);
      if (leaseEnd === undefined || timer === undefined) continue;
      this.timerLeases.delete(id);
      const partition = keys.partitionOf(timer.txId);
      const leases = byPartition.get(partition) ?? [];
      leases.push(id, leaseEnd);
      byPartition.set(partition, leases);
    }
    await this.connection.call('completeTimers', () =>
      Promise.all(
        [...byPartition].map(([partition, leases]) => scripts.completeTimers(keys.timers(partition), leases)),
      ),
    );
  }

  /**
   * Drops the leases that ended before `before`: their timers were committed (cancelled with the
   * write) or taken by another claimer since. The map holds about two leases' claims at most.
   */
  private forgetLeases(before: number): void {
    for (const [id, leaseEnd] of this.timerLeases) if (leaseEnd < before) this.timerLeases.delete(id);
  }

  /**
   * One pass of index pruning: sweeps each partition's `all` index on from where the last pass
   * stopped, up to its end or PRUNE_MAX_ROUNDS rounds, and drops the entries of runs that expired
   * from every index. Returns how many were dropped. Runs every `indexPruneIntervalMs` on its own;
   * exposed for operations and tests. Not part of the port.
   */
  pruneIndexes(): Promise<number> {
    this.assertOpen();
    this.pruning ??= this.prune().finally(() => (this.pruning = undefined));
    return this.pruning;
  }

  /** Further calls are refused; closes the connection if this store opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pruneTimer !== undefined) clearInterval(this.pruneTimer);
    await this.pruning?.catch(() => undefined);
    // Transitions and reads queued before close are sent and answered.
    await Promise.all([this.commits.drain(), this.reads.drain()]);
    if (this.owned) await this.connection.close();
  }

  private async prune(): Promise<number> {
    await this.connection.ready();
    const { keys, client } = this.connection;
    // Runs are of registered workflows: their workflow indexes are the ones that can hold them.
    const workflows = await this.connection.call('prune indexes', () =>
      client.smembers(keys.definitionIds()),
    );
    // Every partition's rounds end before the pass does (a failed one too): the next pass never
    // runs beside rounds of this one.
    const outcomes = await Promise.allSettled(
      this.pruneRanks.map((_, partition) => this.prunePartition(partition, workflows)),
    );
    let removed = 0;
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') throw outcome.reason;
      removed += outcome.value;
    }
    return removed;
  }

  /**
   * Prune rounds over one partition until its sweep reaches the end of the index (the next pass
   * starts again with the oldest entries) or PRUNE_MAX_ROUNDS. Each round is one script call that
   * looks at PRUNE_BATCH entries, so Redis serves other clients between rounds.
   */
  private async prunePartition(partition: number, workflows: readonly string[]): Promise<number> {
    const { keys, scripts, counters } = this.connection;
    let removed = 0;
    for (let round = 0; round < PRUNE_MAX_ROUNDS && !this.closed; round += 1) {
      const [next, dropped] = await this.connection.call('prune indexes', () =>
        scripts.pruneIndex(
          [keys.indexAll(partition), keys.base(partition)],
          [this.pruneRanks[partition] ?? 0, PRUNE_BATCH, ...workflows],
        ),
      );
      this.pruneRanks[partition] = Number(next);
      removed += Number(dropped);
      counters.expiredIndexEntries += Number(dropped);
      if (Number(next) === 0) break;
    }
    return removed;
  }

  /**
   * Builds one transition's block of `commit.lua` (see its header) and queues it with the other
   * transitions of this turn in its partition; resolves with its own reply.
   */
  private async write(
    mode: 'create' | 'commit',
    expected: string,
    revision: string,
    transition: Transition,
    createFields: ScriptArg[],
  ): Promise<[number, number?]> {
    const { keys, options, counters } = this.connection;
    const run = transition.run;
    const partition = keys.partitionOf(run.txId);
    const ack = this.acknowledgeable(transition.ack, partition);
    // Encode everything before anything is queued: a message that cannot be encoded writes nothing.
    const parts = encodeTransitionParts(run, transition.changedSteps);
    const commands = transition.commands.map((command) => ({
      stream: keys.stream(partition, Topics.command(command.payload.worker)),
      data: this.encode(command, partition),
    }));
    const head: ScriptArg[] = [
      mode,
      run.txId,
      expected,
      revision,
      run.state,
      parts.header,
      isTerminalRunState(run.state) && options.terminalRunTtlMs > 0 ? options.terminalRunTtlMs : '',
      ack?.entryId ?? '',
      ack?.group ?? '',
      ...createFields,
    ];
    const tail: ScriptArg[] = [
      transition.event === undefined ? '' : this.encode(transition.event, partition),
      transition.schedule.length,
    ];
    for (const timer of transition.schedule) {
      if (!Number.isFinite(timer.dueAt))
        throw new ValidationError('transition', [`timer ${timer.id} has no due time`]);
      if (keys.partitionOf(timer.txId) !== partition) {
        throw new ValidationError('transition', [`timer ${timer.id} belongs to another run's partition`]);
      }
      tail.push(timer.id, timer.dueAt);
    }
    tail.push(transition.cancel.length, ...transition.cancel);
    const pending: PendingCommit = {
      runKey: keys.run(partition, run.txId),
      head,
      steps: parts.steps,
      commands,
      tail,
      reply: undefined,
      error: undefined,
    };
    try {
      await this.connection.ready();
      await this.commits.add(String(partition), pending);
    } catch (err) {
      throw this.connection.redisError(mode, err);
    }
    if (pending.error !== undefined) throw this.connection.redisError(mode, pending.error);
    const reply = pending.reply;
    if (!Array.isArray(reply)) {
      throw new MultiAgentsError(
        ErrorCode.Internal,
        `${mode}: commit.lua gave no reply for run ${run.txId}`,
        {
          retryable: true,
        },
      );
    }
    if (reply[0] === COMMIT_WRITTEN) {
      counters.commits += 1;
      for (const command of transition.commands)
        this.connection.touchedTopics.add(Topics.command(command.payload.worker));
      if (ack !== undefined) {
        ack.settled = true;
        counters.acked += 1;
        counters.ackedInCommit += 1;
      }
    }
    return [Number(reply[0]), reply[1] === undefined ? undefined : Number(reply[1])];
  }

  /**
   * Sends one partition's queued transitions as one `commit.lua` call and hands each its reply.
   * When Redis refuses the call (a malformed block: the script writes nothing then), each
   * transition is sent again alone, so only the one at fault gets the error.
   */
  private async sendCommits(partition: number, batch: readonly PendingCommit[]): Promise<void> {
    // Sent a turn after the commits were queued: the connection may have closed since.
    this.connection.assertOpen();
    try {
      const replies = await this.connection.scripts.commit(...commitCall(this.connection, partition, batch));
      batch.forEach((pending, i) => (pending.reply = replies[i]));
    } catch (err) {
      if (batch.length === 1 || !(err instanceof Error && err.name === 'ReplyError')) throw err;
      await Promise.all(
        batch.map((pending) =>
          this.sendCommits(partition, [pending]).catch((error: unknown) => (pending.error = error)),
        ),
      );
    }
  }

  /**
   * The delivery a transition acknowledges in its own write: a result this backend's bus
   * delivered from the run's partition. A delivery of another bus is left to that bus (it
   * acknowledges it when the handler returns). A result read from another partition's stream
   * cannot be committed with this run: it is refused as poison (misrouted or forged), and the
   * bus dead-letters it.
   */
  private acknowledgeable(delivery: Delivery | undefined, partition: number): RedisDelivery | undefined {
    if (!(delivery instanceof RedisDelivery) || delivery.connection !== this.connection) return undefined;
    if (delivery.settled || delivery.topic !== Topics.results) return undefined;
    if (delivery.source.partition !== partition) {
      this.connection.counters.misrouted += 1;
      throw new PoisonMessageError(
        `result ${delivery.envelope.id} was read from partition ${String(delivery.source.partition)}, ` +
          `but its run lives in partition ${partition}`,
        { details: { txId: delivery.envelope.txId, partition, from: delivery.source.partition } },
      );
    }
    return delivery;
  }

  private encode(envelope: Envelope, partition: number): Buffer {
    if (this.connection.keys.partitionOf(envelope.txId) !== partition) {
      throw new ValidationError('transition', [`message ${envelope.id} is about another run's partition`]);
    }
    const bytes = encodeEnvelope(envelope, this.connection.options.codec);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private assertOpen(): void {
    if (this.closed) throw new FailedPreconditionError('RedisRunStore is closed');
  }
}

/** A run hash as read back (HGETALL), or undefined when it does not exist. */
function decodeStoredRun(fields: Record<string, string>): StoredRun | undefined {
  const { m: meta, h: header, v: version, r: revision } = fields;
  if (meta === undefined || header === undefined || version === undefined || revision === undefined) {
    return undefined;
  }
  const steps: Record<string, string> = {};
  for (const [field, value] of Object.entries(fields)) {
    if (field.startsWith('s:')) steps[field.slice(2)] = value;
  }
  return { run: decodeRunRecord({ meta, header, steps }), version: Number(version), revision };
}
