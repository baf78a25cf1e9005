import { RunState } from '@multiagents/contracts';

const states = Object.values(RunState)
  .map((state) => `'${state}'`)
  .join(', ');

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
 * the workflow indexes named; list() also drops such an entry from the index it reads.
 */
export const PRUNE_INDEX_SCRIPT = `#!lua
local STATES = { ${states} }
local all, base = KEYS[1], KEYS[2]
local start, count = tonumber(ARGV[1]), tonumber(ARGV[2])
if not start or not count or count < 1 then
  return redis.error_reply('ERR multiagents prune-index: bad rank or count')
end
local ids = redis.call('ZRANGE', all, start, start + count - 1)
local removed = 0
for _, txId in ipairs(ids) do
  if redis.call('EXISTS', base .. 'run:' .. txId) == 0 then
    redis.call('ZREM', all, txId)
    for _, state in ipairs(STATES) do redis.call('ZREM', base .. 'st:' .. state, txId) end
    for i = 3, #ARGV do redis.call('ZREM', base .. 'wf:' .. ARGV[i], txId) end
    removed = removed + 1
  end
end
if #ids < count then return { 0, removed } end
return { start + #ids - removed, removed }
`;
