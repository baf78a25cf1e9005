import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';
import type { RedisClient } from './redis-backend-options';
import { APPEND_TIMELINE_SCRIPT } from './lua/append-timeline-script';
import { CLAIM_SCRIPT } from './lua/claim-script';
import { CLAIM_TIMERS_SCRIPT } from './lua/claim-timers-script';
import { COMMIT_SCRIPT } from './lua/commit-script';
import { DEAD_LETTER_SCRIPT } from './lua/dead-letter-script';
import { FLUSH_SCRIPT } from './lua/flush-script';
import { INDEX_PAGE_SCRIPT } from './lua/index-page-script';
import { PRUNE_INDEX_SCRIPT } from './lua/prune-index-script';
import { PUT_DEFINITION_SCRIPT } from './lua/put-definition-script';
import { REDELIVER_SCRIPT } from './lua/redeliver-script';
import { REPLAY_SCRIPT } from './lua/replay-script';
import { TOUCH_SCRIPT } from './lua/touch-script';
import { TRIM_SCRIPT } from './lua/trim-script';

/** An argument of a script: text, a number, or binary-safe bytes. */
export type ScriptArg = string | number | Buffer;

/**
 * Every Lua script of the backend as a method of one connection: `(keys, args)`, replies with
 * bulk strings as Buffers where the reply carries message bytes (see each script's header in
 * `src/lua/` for KEYS, ARGV and replies). ioredis sends them with EVALSHA and falls back to EVAL
 * after a Redis restart flushed its script cache.
 */
export interface RedisScripts {
  commit(keys: readonly string[], args: readonly ScriptArg[]): Promise<[number, number?][]>;
  flush(keys: readonly string[], args: readonly ScriptArg[]): Promise<number>;
  claimTimers(key: string, now: number, limit: number, leaseEnd: number): Promise<string[]>;
  claim(keys: readonly string[], args: readonly ScriptArg[]): Promise<[Buffer, unknown[], number]>;
  redeliver(key: string, args: readonly ScriptArg[]): Promise<unknown[]>;
  touch(key: string, args: readonly ScriptArg[]): Promise<number>;
  deadLetter(keys: readonly string[], args: readonly ScriptArg[]): Promise<string | null>;
  replay(keys: readonly string[], id: string): Promise<string | null>;
  trim(key: string, maxRetained: number): Promise<number>;
  indexPage(key: string, args: readonly ScriptArg[]): Promise<string[]>;
  pruneIndex(keys: readonly string[], args: readonly ScriptArg[]): Promise<[number, number]>;
  putDefinition(keys: readonly string[], args: readonly ScriptArg[]): Promise<number>;
  appendTimeline(keys: readonly string[], args: readonly ScriptArg[]): Promise<number>;
}

// Names are namespaced: other code may define commands on a client it shares with us. Scripts
// whose KEYS count varies are defined without one (the count is the first argument).
const DEFINITIONS = {
  multiagentsCommit: COMMIT_SCRIPT,
  multiagentsFlush: FLUSH_SCRIPT,
  multiagentsClaimTimers: CLAIM_TIMERS_SCRIPT,
  multiagentsClaim: CLAIM_SCRIPT,
  multiagentsRedeliver: REDELIVER_SCRIPT,
  multiagentsTouch: TOUCH_SCRIPT,
  multiagentsDeadLetter: DEAD_LETTER_SCRIPT,
  multiagentsReplay: REPLAY_SCRIPT,
  multiagentsTrim: TRIM_SCRIPT,
  multiagentsIndexPage: INDEX_PAGE_SCRIPT,
  multiagentsPruneIndex: PRUNE_INDEX_SCRIPT,
  multiagentsPutDefinition: PUT_DEFINITION_SCRIPT,
  multiagentsAppendTimeline: APPEND_TIMELINE_SCRIPT,
} as const;

type ScriptMethod = (...args: ScriptArg[]) => Promise<unknown>;

/** Defines the scripts on `client` and returns them as typed methods. */
export function defineScripts(client: RedisClient): RedisScripts {
  for (const [name, lua] of Object.entries(DEFINITIONS)) client.defineCommand(name, { lua });
  // defineCommand adds `name` and `nameBuffer` methods at run time; ioredis cannot type them.
  const commands = client as unknown as Record<string, ScriptMethod | undefined>;
  const method = (
    name: string,
  ): ((keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>) => {
    const fn = commands[name];
    if (fn === undefined) throw new MultiAgentsError(ErrorCode.Internal, `ioredis did not define ${name}`);
    return (keys, args) => fn.call(client, keys.length, ...keys, ...args);
  };
  const commit = method('multiagentsCommit');
  const flush = method('multiagentsFlush');
  const claimTimers = method('multiagentsClaimTimers');
  const claim = method('multiagentsClaimBuffer');
  const redeliver = method('multiagentsRedeliverBuffer');
  const touch = method('multiagentsTouch');
  const deadLetter = method('multiagentsDeadLetter');
  const replay = method('multiagentsReplay');
  const trim = method('multiagentsTrim');
  const indexPage = method('multiagentsIndexPage');
  const pruneIndex = method('multiagentsPruneIndex');
  const putDefinition = method('multiagentsPutDefinition');
  const appendTimeline = method('multiagentsAppendTimeline');
  return {
    commit: (keys, args) => commit(keys, args) as Promise<[number, number?][]>,
    flush: (keys, args) => flush(keys, args) as Promise<number>,
    claimTimers: (key, now, limit, leaseEnd) =>
      claimTimers([key], [now, limit, leaseEnd]) as Promise<string[]>,
    claim: (keys, args) => claim(keys, args) as Promise<[Buffer, unknown[], number]>,
    redeliver: (key, args) => redeliver([key], args) as Promise<unknown[]>,
    touch: (key, args) => touch([key], args) as Promise<number>,
    deadLetter: (keys, args) => deadLetter(keys, args) as Promise<string | null>,
    replay: (keys, id) => replay(keys, [id]) as Promise<string | null>,
    trim: (key, maxRetained) => trim([key], [maxRetained]) as Promise<number>,
    indexPage: (key, args) => indexPage([key], args) as Promise<string[]>,
    pruneIndex: (keys, args) => pruneIndex(keys, args) as Promise<[number, number]>,
    putDefinition: (keys, args) => putDefinition(keys, args) as Promise<number>,
    appendTimeline: (keys, args) => appendTimeline(keys, args) as Promise<number>,
  };
}
