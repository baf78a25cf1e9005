import type { Redis } from 'ioredis';
import { CAS_RUN_SCRIPT } from './lua/cas-run-script';
import { CLAIM_TIMERS_SCRIPT } from './lua/claim-timers-script';
import { CLEAR_OUTBOX_SCRIPT } from './lua/clear-outbox-script';
import { CREATE_RUN_SCRIPT } from './lua/create-run-script';
import { DROP_RUN_INDEX_SCRIPT } from './lua/drop-run-index-script';
import { GET_DEFINITION_SCRIPT } from './lua/get-definition-script';
import { GET_RUN_SCRIPT } from './lua/get-run-script';
import { INDEX_PAGE_SCRIPT } from './lua/index-page-script';
import { INDEX_RUN_SCRIPT } from './lua/index-run-script';
import { MARK_OUTBOX_SCRIPT } from './lua/mark-outbox-script';
import { PUT_DEFINITION_SCRIPT } from './lua/put-definition-script';
import { REINDEX_RUN_SCRIPT } from './lua/reindex-run-script';
import { REMOVE_TIMERS_SCRIPT } from './lua/remove-timers-script';
import { SCHEDULE_TIMERS_SCRIPT } from './lua/schedule-timers-script';
import { SWAP_IDEMPOTENCY_SCRIPT } from './lua/swap-idempotency-script';
import { UNMARK_OUTBOX_SCRIPT } from './lua/unmark-outbox-script';
import { VOID_RUN_SCRIPT } from './lua/void-run-script';
import { RUN_STATES } from './redis-keys';

const STATE_KEYS = RUN_STATES.length;

// Names are namespaced: other code may define commands on a client it shares with the stores.
const DEFINITIONS = {
  multiagentsStoreCreateRun: { lua: CREATE_RUN_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreCasRun: { lua: CAS_RUN_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreGetRun: { lua: GET_RUN_SCRIPT, numberOfKeys: 2, readOnly: true },
  multiagentsStoreClearOutbox: { lua: CLEAR_OUTBOX_SCRIPT, numberOfKeys: 1 },
  multiagentsStoreVoidRun: { lua: VOID_RUN_SCRIPT, numberOfKeys: 1 },
  multiagentsStoreSwapIdempotency: { lua: SWAP_IDEMPOTENCY_SCRIPT, numberOfKeys: 1 },
  multiagentsStoreMarkOutbox: { lua: MARK_OUTBOX_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreUnmarkOutbox: { lua: UNMARK_OUTBOX_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreIndexRun: { lua: INDEX_RUN_SCRIPT, numberOfKeys: 4 },
  multiagentsStoreReindexRun: { lua: REINDEX_RUN_SCRIPT, numberOfKeys: 1 + STATE_KEYS },
  multiagentsStoreDropRunIndex: { lua: DROP_RUN_INDEX_SCRIPT, numberOfKeys: 3 + STATE_KEYS },
  multiagentsStoreIndexPage: { lua: INDEX_PAGE_SCRIPT, numberOfKeys: 1, readOnly: true },
  multiagentsStoreScheduleTimers: { lua: SCHEDULE_TIMERS_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreClaimTimers: { lua: CLAIM_TIMERS_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreRemoveTimers: { lua: REMOVE_TIMERS_SCRIPT, numberOfKeys: 2 },
  multiagentsStorePutDefinition: { lua: PUT_DEFINITION_SCRIPT, numberOfKeys: 2 },
  multiagentsStoreGetDefinition: { lua: GET_DEFINITION_SCRIPT, numberOfKeys: 1, readOnly: true },
} as const;

type ScriptName = keyof typeof DEFINITIONS;
type Arg = string | number;
/** Calls one script: its KEYS, then its ARGV (see the script's header in `src/lua/`). */
export type ScriptCall = (keys: readonly string[], args: readonly Arg[]) => Promise<unknown>;

/** The stores' Lua scripts, one typed entry point each (KEYS, ARGV and replies: `src/lua/`). */
export interface StoreScripts {
  readonly createRun: ScriptCall;
  readonly casRun: ScriptCall;
  readonly getRun: ScriptCall;
  readonly clearOutbox: ScriptCall;
  readonly voidRun: ScriptCall;
  readonly swapIdempotency: ScriptCall;
  readonly markOutbox: ScriptCall;
  readonly unmarkOutbox: ScriptCall;
  readonly indexRun: ScriptCall;
  readonly reindexRun: ScriptCall;
  readonly dropRunIndex: ScriptCall;
  readonly indexPage: ScriptCall;
  readonly scheduleTimers: ScriptCall;
  readonly claimTimers: ScriptCall;
  readonly removeTimers: ScriptCall;
  readonly putDefinition: ScriptCall;
  readonly getDefinition: ScriptCall;
}

type ScriptMethod = (...args: Arg[]) => Promise<unknown>;
type DefinedCommands = Record<string, ScriptMethod | undefined>;

/**
 * Registers the stores' scripts on `client` with ioredis `defineCommand` (EVALSHA, with EVAL the
 * first time on each connection, so a restarted Redis with an empty script cache is no problem).
 */
export function defineStoreScripts(client: Redis): StoreScripts {
  for (const [name, definition] of Object.entries(DEFINITIONS)) client.defineCommand(name, definition);
  // defineCommand adds methods at run time; ioredis cannot type them.
  const commands = client as unknown as DefinedCommands;
  const script = (name: ScriptName): ScriptCall => {
    const method = commands[name];
    if (method === undefined) throw new Error(`ioredis did not define ${name}`);
    const { numberOfKeys } = DEFINITIONS[name];
    return (keys, args) => {
      // A wrong key count would shift KEYS into ARGV silently: fail loudly instead (a bug here).
      if (keys.length !== numberOfKeys)
        throw new Error(`${name} takes ${numberOfKeys} keys, got ${keys.length}`);
      return method.call(client, ...keys, ...args);
    };
  };
  return {
    createRun: script('multiagentsStoreCreateRun'),
    casRun: script('multiagentsStoreCasRun'),
    getRun: script('multiagentsStoreGetRun'),
    clearOutbox: script('multiagentsStoreClearOutbox'),
    voidRun: script('multiagentsStoreVoidRun'),
    swapIdempotency: script('multiagentsStoreSwapIdempotency'),
    markOutbox: script('multiagentsStoreMarkOutbox'),
    unmarkOutbox: script('multiagentsStoreUnmarkOutbox'),
    indexRun: script('multiagentsStoreIndexRun'),
    reindexRun: script('multiagentsStoreReindexRun'),
    dropRunIndex: script('multiagentsStoreDropRunIndex'),
    indexPage: script('multiagentsStoreIndexPage'),
    scheduleTimers: script('multiagentsStoreScheduleTimers'),
    claimTimers: script('multiagentsStoreClaimTimers'),
    removeTimers: script('multiagentsStoreRemoveTimers'),
    putDefinition: script('multiagentsStorePutDefinition'),
    getDefinition: script('multiagentsStoreGetDefinition'),
  };
}
