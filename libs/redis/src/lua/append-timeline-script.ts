/**
 * `append-timeline.lua`: adds entries to the timelines of one or more runs of one partition and
 * restarts each one's time to live, in one command (the event-monitor's appends of one
 * event-loop turn, batched per partition).
 *
 * ```
 * KEYS[k]   a run's timeline hash (every key in one partition: one hash tag)
 * ARGV      per key, in KEYS order: its time to live from now (a whole number of ms, >= 1), n,
 *           then n pairs of an entry's version and its JSON
 * returns   the number of entries added (a version already there is kept as it was)
 *           error 'ERR multiagents append-timeline: bad arguments' (nothing written)
 * ```
 *
 * HSETNX per version: a redelivered event changes nothing, and replicas appending at once never
 * overwrite each other. The arguments are checked before the first write.
 */
export const APPEND_TIMELINE_SCRIPT = `#!lua
local plan = {}
local i = 1
for k = 1, #KEYS do
  local ttl, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  -- tonumber takes 'nan' and 'inf' too: only a whole number of ms from 1 to 2^53 passes.
  if not ttl or ttl ~= ttl or ttl < 1 or ttl > 9007199254740992 or ttl ~= math.floor(ttl)
    or not n or n < 0 or n ~= math.floor(n) or i + 1 + 2 * n > #ARGV then
    return redis.error_reply('ERR multiagents append-timeline: bad arguments')
  end
  plan[k] = { i + 2, n, ttl }
  i = i + 2 + 2 * n
end
if i ~= #ARGV + 1 then return redis.error_reply('ERR multiagents append-timeline: bad arguments') end
local added = 0
for k = 1, #KEYS do
  local first, n, ttl = plan[k][1], plan[k][2], plan[k][3]
  for j = first, first + 2 * n - 2, 2 do
    added = added + redis.call('HSETNX', KEYS[k], ARGV[j], ARGV[j + 1])
  end
  redis.call('PEXPIRE', KEYS[k], ttl)
end
return added
`;
