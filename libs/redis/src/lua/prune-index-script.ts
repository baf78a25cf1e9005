import { RunState } from '@multiagents/contracts';

const states = Object.values(RunState)
  .map((state) => `'${state}'`)
  .join(', ');

/**
 * Lua shared by `prune-index.lua` and `drop-expired.lua`: `unindexExpired(base, txId, first)`
 * drops `txId` from the partition's `all` index, from every state index and from the workflow
 * indexes named by `ARGV[first..]` when its run hash no longer exists (it expired), and returns 1;
 * 0 when the run exists. Checked here, in the script, so a run is never unindexed on a stale read.
 */
export const UNINDEX_EXPIRED_LUA = `
local STATES = { ${states} }
local function unindexExpired(base, txId, first)
  if redis.call('EXISTS', base .. 'run:' .. txId) == 1 then return 0 end
  redis.call('ZREM', base .. 'all', txId)
  for _, state in ipairs(STATES) do redis.call('ZREM', base .. 'st:' .. state, txId) end
  for i = first, #ARGV do redis.call('ZREM', base .. 'wf:' .. ARGV[i], txId) end
  return 1
end
`;

/**
 * `prune-index.lua`: drops the index entries of runs that expired (terminal runs have a TTL), a
 * slice of one partition's `all` index at a time, so the indexes do not grow with every run that
 * ever finished.
 *
 * ```
 * KEYS[1]   <prefix>:{p<i>}:all   every run of the partition, by createdAt (zset)
 * KEYS[2]   <prefix>:{p<i>}:      the partition's base: run hashes are base..'run:'..txId, the
 *                                 other indexes base..'st:'..state and base..'wf:'..workflowId
 * ARGV[1]   rank in KEYS[1] to start at (oldest first)
 * ARGV[2]   how many entries to look at
 * ARGV[3..] the registered workflow ids (their indexes may hold the run too)
 * returns   { rank to start at next time (0: the end was reached), entries removed }
 * ```
 *
 * An entry whose run hash no longer exists is removed from `all`, from every state index and from
 * the workflow indexes named; list() drops the entries it meets the same way (`drop-expired.lua`).
 */
export const PRUNE_INDEX_SCRIPT = `#!lua
${UNINDEX_EXPIRED_LUA}
local all, base = KEYS[1], KEYS[2]
if all ~= base .. 'all' then
  return redis.error_reply('ERR multiagents prune-index: KEYS[1] is not the all index of KEYS[2]')
end
local start, count = tonumber(ARGV[1]), tonumber(ARGV[2])
if not start or not count or count < 1 then
  return redis.error_reply('ERR multiagents prune-index: bad rank or count')
end
local ids = redis.call('ZRANGE', all, start, start + count - 1)
local removed = 0
for _, txId in ipairs(ids) do
  removed = removed + unindexExpired(base, txId, 3)
end
if #ids < count then return { 0, removed } end
return { start + #ids - removed, removed }
`;
