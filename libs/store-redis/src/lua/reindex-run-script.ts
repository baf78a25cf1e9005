import { RUN_STATES } from '../redis-keys';

/**
 * `reindex-run.lua`: moves a run to the state index of a version that was written, unless the
 * indexes already know a newer version; optionally drops a stale entry found by list().
 *
 * ```
 * KEYS[1]      <p>:{runs}:meta             txId -> "<version>|<state>|<ms>|<workflowId>" (hash)
 * KEYS[2..11]  <p>:{runs}:state:<state>    the state indexes, in RUN_STATES order (zsets)
 * ARGV[1]      txId
 * ARGV[2]      version that was written
 * ARGV[3]      its state
 * ARGV[4]      createdAt, in ms (the score)
 * ARGV[5]      new meta value `<version>|<state>|<now ms>|<workflowId>`
 * ARGV[6]      a state index list() found the run in while it is not in that state, or ''
 * returns      1 when the meta moved to this version, 0 when it already knew a newer one
 * ```
 *
 * Writers call it after a compare-and-set that changed the state (and creators to confirm a
 * create). The version guard makes a late call harmless: a paused writer waking up cannot take
 * the run out of the index of the state a newer version put it in. Every state index is passed
 * in KEYS because which one the run leaves is only known inside (Cluster: declared keys only).
 */
export const REINDEX_RUN_SCRIPT = `
local STATES = {${RUN_STATES.map((state) => `'${state}'`).join(', ')}}
local KEY = {}
for i, state in ipairs(STATES) do
  KEY[state] = KEYS[i + 1]
end
local txId = ARGV[1]
local known, knownState = -1, nil
local meta = redis.call('HGET', KEYS[1], txId)
if meta then
  local bar = string.find(meta, '|', 1, true)
  known = tonumber(string.sub(meta, 1, bar - 1))
  knownState = string.sub(meta, bar + 1, string.find(meta, '|', bar + 1, true) - 1)
end
local moved = 0
if tonumber(ARGV[2]) > known then
  if knownState and knownState ~= ARGV[3] and KEY[knownState] then
    redis.call('ZREM', KEY[knownState], txId)
  end
  if KEY[ARGV[3]] then
    redis.call('ZADD', KEY[ARGV[3]], ARGV[4], txId)
  end
  redis.call('HSET', KEYS[1], txId, ARGV[5])
  knownState = ARGV[3]
  moved = 1
end
if ARGV[6] ~= '' and ARGV[6] ~= knownState and KEY[ARGV[6]] then
  redis.call('ZREM', KEY[ARGV[6]], txId)
end
return moved
`;
