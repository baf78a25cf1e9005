import { RunState, ValidationError } from '@multiagents/contracts';

/** Default of {@link RedisKeys}' prefix (SPEC §7, `MULTIAGENTS_PREFIX`). */
export const DEFAULT_REDIS_KEY_PREFIX = 'multiagents';

// Redis Cluster hashes only what is between the first `{` and the next `}`. A brace in the prefix
// or in a txId would move or empty that tag, and one run's keys could land in different slots.
const BRACES = /[{}]/;

/** Every run state, in a fixed order: scripts that touch the state indexes get all of them as KEYS. */
export const RUN_STATES: readonly RunState[] = Object.freeze(Object.values(RunState));

/**
 * The only place where the stores build Redis key names. Per-run keys carry the run's hash tag
 * (`{<txId>}`), so a Lua script may write a run's record and its outbox together in one Cluster
 * slot; global keys carry fixed tags, one slot per concern:
 *
 * ```
 * key                                   type    slot (hash tag)
 * <p>:{<txId>}:run                      hash    {<txId>}  v (version), run (JSON), st (state),
 *                                                         ik (idempotency key: the back-reference)
 *                                                         or only `void` (a fenced-off txId)
 * <p>:{<txId>}:outbox                   list    {<txId>}  "<version>|<effect JSON>", oldest first
 * <p>:idem:{<key>}                      string  {<key>}   idempotency key -> txId
 * <p>:{runs}:all                        zset    {runs}    txId by createdAt
 * <p>:{runs}:state:<state>              zset    {runs}    txId by createdAt, one per state
 * <p>:{runs}:wf:<workflowId>            zset    {runs}    txId by createdAt, one per workflow
 * <p>:{runs}:meta                       hash    {runs}    txId -> "<version>|<state>|<ms>|<workflowId>"
 * <p>:{outbox}:pending                  zset    {outbox}  txId by time of its first pending write
 * <p>:{outbox}:marks                    hash    {outbox}  txId -> "<version>|<ms>" of the last mark
 * <p>:{timers}:due                      zset    {timers}  timer id by due time (or lease end)
 * <p>:{timers}:data                     hash    {timers}  timer id -> timer JSON
 * <p>:{definitions}:ids                 set     {definitions}  workflow ids
 * <p>:{definitions}:def:<workflowId>    hash    {definitions}  "<version>" -> canonical JSON,
 *                                                              "latest" -> highest version
 * ```
 *
 * @example
 * const keys = new RedisKeys('multiagents');
 * keys.run('tx-1'); // 'multiagents:{tx-1}:run'
 */
export class RedisKeys {
  constructor(readonly prefix: string = DEFAULT_REDIS_KEY_PREFIX) {
    const problems = RedisKeys.prefixProblems(prefix);
    if (problems.length > 0) throw new ValidationError('Redis key prefix', problems);
  }

  /** What is wrong with `prefix` as a key prefix (empty when it is fine). */
  static prefixProblems(prefix: unknown): string[] {
    if (typeof prefix !== 'string' || prefix.length === 0) return ['prefix must be a non-empty string'];
    if (BRACES.test(prefix)) return ['prefix must not contain { or } (they would break the hash tags)'];
    return [];
  }

  /** The hash tag shared by every key of run `txId`. Throws `ValidationError` for a bad txId. */
  runTag(txId: string): string {
    if (typeof txId !== 'string' || txId.length === 0) {
      throw new ValidationError('txId', ['must be a non-empty string']);
    }
    if (BRACES.test(txId)) {
      throw new ValidationError('txId', [`${txId} must not contain { or } (Redis Cluster hash tags)`]);
    }
    return `{${txId}}`;
  }

  /** A run's record (hash). */
  run(txId: string): string {
    return `${this.prefix}:${this.runTag(txId)}:run`;
  }

  /** A run's outbox (list), in the run's slot so the CAS script appends to it atomically. */
  outbox(txId: string): string {
    return `${this.prefix}:${this.runTag(txId)}:outbox`;
  }

  /**
   * An idempotency key's mapping to the txId it started. The key is caller data of any shape and
   * is used whole: a brace inside only moves this one key's slot, which nothing depends on.
   */
  idempotency(key: string): string {
    return `${this.prefix}:idem:{${key}}`;
  }

  /** Every run, by createdAt. */
  runsAll(): string {
    return `${this.prefix}:{runs}:all`;
  }

  /** Runs in `state`, by createdAt. */
  runsByState(state: RunState): string {
    return `${this.prefix}:{runs}:state:${state}`;
  }

  /** The state indexes of every state, in {@link RUN_STATES} order. */
  runsByEveryState(): string[] {
    return RUN_STATES.map((state) => this.runsByState(state));
  }

  /** Runs of workflow `workflowId`, by createdAt. */
  runsByWorkflow(workflowId: string): string {
    return `${this.prefix}:{runs}:wf:${workflowId}`;
  }

  /** What the indexes know of each run (version and state last indexed, workflow id). */
  runsMeta(): string {
    return `${this.prefix}:{runs}:meta`;
  }

  /** Runs that may have outbox entries, by the time of their first pending write. */
  outboxPending(): string {
    return `${this.prefix}:{outbox}:pending`;
  }

  /** The highest version (and time) each run's pending marker was last set for. */
  outboxMarks(): string {
    return `${this.prefix}:{outbox}:marks`;
  }

  /** Timer ids by the time a claim may take them. */
  timersDue(): string {
    return `${this.prefix}:{timers}:due`;
  }

  /** Timer contents by id. */
  timersData(): string {
    return `${this.prefix}:{timers}:data`;
  }

  /** Registered workflow ids. */
  definitionIds(): string {
    return `${this.prefix}:{definitions}:ids`;
  }

  /** The stored versions of one workflow definition. */
  definition(workflowId: string): string {
    return `${this.prefix}:{definitions}:def:${workflowId}`;
  }
}
