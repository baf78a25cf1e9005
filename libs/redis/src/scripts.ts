import { createHash } from 'node:crypto';
import { ValidationError } from '@multiagents/contracts';
import { Command } from 'ioredis';
import type { RedisClient } from './redis-backend-options';
import { APPEND_TIMELINE_SCRIPT } from './lua/append-timeline-script';
import { CLAIM_SCRIPT } from './lua/claim-script';
import { CLAIM_TIMERS_SCRIPT } from './lua/claim-timers-script';
import { COMMIT_SCRIPT } from './lua/commit-script';
import { COMPLETE_TIMERS_SCRIPT } from './lua/complete-timers-script';
import { DEAD_LETTER_SCRIPT } from './lua/dead-letter-script';
import { DROP_EXPIRED_SCRIPT } from './lua/drop-expired-script';
import { EXTEND_MARK_SCRIPT } from './lua/extend-mark-script';
import { FLUSH_SCRIPT } from './lua/flush-script';
import { FORGET_CONSUMER_SCRIPT } from './lua/forget-consumer-script';
import { INDEX_PAGE_SCRIPT } from './lua/index-page-script';
import { PRUNE_INDEX_SCRIPT } from './lua/prune-index-script';
import { PUT_DEFINITION_SCRIPT } from './lua/put-definition-script';
import { REDELIVER_SCRIPT } from './lua/redeliver-script';
import { REPLAY_SCRIPT } from './lua/replay-script';
import { TOUCH_SCRIPT } from './lua/touch-script';
import { TRIM_SCRIPT } from './lua/trim-script';
import { encodeCommand, type RespArg } from './resp';

/** An argument of a script: text, a number, or binary-safe bytes. */
export type ScriptArg = RespArg;

/**
 * Every Lua script of the backend as a method of one connection: `(keys, args)`, replies with
 * bulk strings as Buffers where the reply carries message bytes (see each script's header in
 * `src/lua/` for KEYS, ARGV and replies). They are sent with EVALSHA, and again with EVAL when
 * Redis does not hold the script (after a restart, or a SCRIPT FLUSH).
 */
export interface RedisScripts {
  commit(keys: readonly string[], args: readonly ScriptArg[]): Promise<[number, number?][]>;
  flush(keys: readonly string[], args: readonly ScriptArg[]): Promise<number>;
  claimTimers(key: string, now: number, limit: number, leaseEnd: number): Promise<string[]>;
  completeTimers(key: string, leases: readonly ScriptArg[]): Promise<number>;
  claim(keys: readonly string[], args: readonly ScriptArg[]): Promise<[Buffer, unknown[], number]>;
  redeliver(key: string, args: readonly ScriptArg[]): Promise<unknown[]>;
  touch(key: string, args: readonly ScriptArg[]): Promise<number>;
  forgetConsumer(key: string, group: string, consumer: string): Promise<number>;
  deadLetter(keys: readonly string[], args: readonly ScriptArg[]): Promise<string | null>;
  replay(keys: readonly string[], id: string): Promise<string | null>;
  trim(key: string, maxRetained: number): Promise<number>;
  indexPage(key: string, args: readonly ScriptArg[]): Promise<string[]>;
  pruneIndex(keys: readonly string[], args: readonly ScriptArg[]): Promise<[number, number]>;
  dropExpired(base: string, args: readonly ScriptArg[]): Promise<number>;
  putDefinition(keys: readonly string[], args: readonly ScriptArg[]): Promise<number>;
  appendTimeline(keys: readonly string[], args: readonly ScriptArg[]): Promise<number>;
  extendMark(key: string, token: string, ttlMs: number): Promise<number>;
}

/** A Lua script and its SHA1, as EVALSHA names it. */
interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * A script call whose bytes are built once by {@link encodeCommand}, not by ioredis' encoder.
 * `args` keeps only the SHA (or source), the key count and the keys: what ioredis reads to route
 * the call in a Cluster (the slot of the first key) and to retry it after MOVED or ASK.
 */
class ScriptCommand extends Command {
  private readonly bytes: Buffer;

  constructor(
    name: 'evalsha' | 'eval',
    body: string,
    keys: readonly string[],
    args: readonly ScriptArg[],
    replyEncoding: BufferEncoding | null,
  ) {
    const head = [body, keys.length, ...keys];
    super(name, head, { replyEncoding });
    this.bytes = encodeCommand(name, head, args);
  }

  override toWritable(): Buffer {
    return this.bytes;
  }
}

/** True for Redis' answer to an EVALSHA of a script it does not hold (restarted, or SCRIPT FLUSH). */
function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/**
 * Runs `script` with EVALSHA; when Redis does not hold it, sends it again as EVAL (which loads it
 * for the next EVALSHA). Replies with bulk strings as Buffers when `replyEncoding` is null.
 */
async function run(
  client: RedisClient,
  { lua, sha }: Script,
  keys: readonly string[],
  args: readonly ScriptArg[],
  replyEncoding: BufferEncoding | null,
): Promise<unknown> {
  try {
    return await client.sendCommand(new ScriptCommand('evalsha', sha, keys, args, replyEncoding));
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return client.sendCommand(new ScriptCommand('eval', lua, keys, args, replyEncoding));
  }
}

/**
 * The backend's scripts on `client`. Their calls are sent as {@link ScriptCommand}s; a client with
 * an ioredis `keyPrefix` is refused (the backend's keys carry its own prefix and hash tags).
 */
export function defineScripts(client: RedisClient): RedisScripts {
  // A Cluster copies `redisOptions.keyPrefix` here too.
  if (client.options.keyPrefix) {
    throw new ValidationError('Redis client', [
      'keyPrefix is not supported: use the backend option prefix (keys carry Redis Cluster hash tags)',
    ]);
  }
  const method = (
    lua: string,
    replyEncoding: BufferEncoding | null = 'utf8',
  ): ((keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>) => {
    const hashed = script(lua);
    return (keys, args) => run(client, hashed, keys, args, replyEncoding);
  };
  const commit = method(COMMIT_SCRIPT);
  const flush = method(FLUSH_SCRIPT);
  const claimTimers = method(CLAIM_TIMERS_SCRIPT);
  const completeTimers = method(COMPLETE_TIMERS_SCRIPT);
  const claim = method(CLAIM_SCRIPT, null);
  const redeliver = method(REDELIVER_SCRIPT, null);
  const touch = method(TOUCH_SCRIPT);
  const forgetConsumer = method(FORGET_CONSUMER_SCRIPT);
  const deadLetter = method(DEAD_LETTER_SCRIPT);
  const replay = method(REPLAY_SCRIPT);
  const trim = method(TRIM_SCRIPT);
  const indexPage = method(INDEX_PAGE_SCRIPT);
  const pruneIndex = method(PRUNE_INDEX_SCRIPT);
  const dropExpired = method(DROP_EXPIRED_SCRIPT);
  const putDefinition = method(PUT_DEFINITION_SCRIPT);
  const appendTimeline = method(APPEND_TIMELINE_SCRIPT);
  const extendMark = method(EXTEND_MARK_SCRIPT);
  return {
    commit: (keys, args) => commit(keys, args) as Promise<[number, number?][]>,
    flush: (keys, args) => flush(keys, args) as Promise<number>,
    claimTimers: (key, now, limit, leaseEnd) =>
      claimTimers([key], [now, limit, leaseEnd]) as Promise<string[]>,
    completeTimers: (key, leases) => completeTimers([key], leases) as Promise<number>,
    claim: (keys, args) => claim(keys, args) as Promise<[Buffer, unknown[], number]>,
    redeliver: (key, args) => redeliver([key], args) as Promise<unknown[]>,
    touch: (key, args) => touch([key], args) as Promise<number>,
    forgetConsumer: (key, group, consumer) => forgetConsumer([key], [group, consumer]) as Promise<number>,
    deadLetter: (keys, args) => deadLetter(keys, args) as Promise<string | null>,
    replay: (keys, id) => replay(keys, [id]) as Promise<string | null>,
    trim: (key, maxRetained) => trim([key], [maxRetained]) as Promise<number>,
    indexPage: (key, args) => indexPage([key], args) as Promise<string[]>,
    pruneIndex: (keys, args) => pruneIndex(keys, args) as Promise<[number, number]>,
    dropExpired: (base, args) => dropExpired([base], args) as Promise<number>,
    putDefinition: (keys, args) => putDefinition(keys, args) as Promise<number>,
    appendTimeline: (keys, args) => appendTimeline(keys, args) as Promise<number>,
    extendMark: (key, token, ttlMs) => extendMark([key], [token, ttlMs]) as Promise<number>,
  };
}
