import type { Redis } from 'ioredis';
import { ACK_SCRIPT } from './lua/ack-script';
import { CLAIM_SCRIPT } from './lua/claim-script';
import { DEAD_LETTER_SCRIPT } from './lua/dead-letter-script';
import { REDELIVER_SCRIPT } from './lua/redeliver-script';
import { REPLAY_SCRIPT } from './lua/replay-script';
import { TOUCH_SCRIPT } from './lua/touch-script';
import { TRIM_SCRIPT } from './lua/trim-script';

type Arg = string | number | Buffer;

/** A `claim.lua` reply, with bulk strings as Buffers. */
export type ClaimReply = [Buffer, Array<Buffer | number | null>, number];

/**
 * The bus's Lua scripts as typed methods of one connection (see each script's header in
 * `src/lua/` for KEYS, ARGV and replies). ioredis sends them with EVALSHA and falls back to EVAL
 * after a Redis restart flushed its script cache.
 */
export interface BusScripts {
  ack(stream: string, group: string, consumer: string, ...pairs: Arg[]): Promise<number>;
  touch(
    stream: string,
    group: string,
    consumer: string,
    id: string,
    count: number,
    idleMs: number,
  ): Promise<number>;
  deadLetter(
    stream: string,
    dead: string,
    group: string,
    consumer: string,
    id: string,
    count: number,
    error: string,
    atMs: number,
    maxDeadLetters: number,
  ): Promise<string | null>;
  redeliver(
    stream: string,
    group: string,
    consumer: string,
    ...pairs: Arg[]
  ): Promise<Array<Buffer | number | null>>;
  claim(
    stream: string,
    dead: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    cursor: string,
    count: number,
    maxDeliveries: number,
    atMs: number,
    maxDeadLetters: number,
  ): Promise<ClaimReply>;
  trim(stream: string, maxRetained: number): Promise<number>;
  replay(stream: string, dead: string, id: string): Promise<string | null>;
}

// Names are namespaced: other code may define commands on a client it shares with us.
const DEFINITIONS = {
  multiagentsBusAck: { lua: ACK_SCRIPT, numberOfKeys: 1 },
  multiagentsBusTouch: { lua: TOUCH_SCRIPT, numberOfKeys: 1 },
  multiagentsBusDeadLetter: { lua: DEAD_LETTER_SCRIPT, numberOfKeys: 2 },
  multiagentsBusRedeliver: { lua: REDELIVER_SCRIPT, numberOfKeys: 1 },
  multiagentsBusClaim: { lua: CLAIM_SCRIPT, numberOfKeys: 2 },
  multiagentsBusTrim: { lua: TRIM_SCRIPT, numberOfKeys: 1 },
  multiagentsBusReplay: { lua: REPLAY_SCRIPT, numberOfKeys: 2 },
} as const;

type ScriptMethod = (...args: Arg[]) => Promise<unknown>;
type DefinedCommands = Record<string, ScriptMethod | undefined>;

/** Defines the bus's scripts on `connection` and returns them as typed methods. */
export function defineBusScripts(connection: Redis): BusScripts {
  for (const [name, definition] of Object.entries(DEFINITIONS)) {
    connection.defineCommand(name, definition);
  }
  // defineCommand adds `name` and `nameBuffer` methods at run time; ioredis cannot type them.
  const commands = connection as unknown as DefinedCommands;
  const method = (name: string): ScriptMethod => {
    const fn = commands[name];
    if (fn === undefined) throw new Error(`ioredis did not define ${name}`);
    return fn.bind(connection);
  };
  const ack = method('multiagentsBusAck');
  const touch = method('multiagentsBusTouch');
  const deadLetter = method('multiagentsBusDeadLetter');
  const redeliver = method('multiagentsBusRedeliverBuffer');
  const claim = method('multiagentsBusClaimBuffer');
  const trim = method('multiagentsBusTrim');
  const replay = method('multiagentsBusReplay');
  return {
    ack: (...args) => ack(...args) as Promise<number>,
    touch: (...args) => touch(...args) as Promise<number>,
    deadLetter: (...args) => deadLetter(...args) as Promise<string | null>,
    redeliver: (...args) => redeliver(...args) as Promise<Array<Buffer | number | null>>,
    claim: (...args) => claim(...args) as Promise<ClaimReply>,
    trim: (...args) => trim(...args) as Promise<number>,
    replay: (...args) => replay(...args) as Promise<string | null>,
  };
}
