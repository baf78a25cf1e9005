/**
 * `complete-timers.lua`: removes timers that fired without a commit, each only while it is still
 * the claim that fired it.
 *
 * ```
 * KEYS[1]   <prefix>:{p<i>}:timers   timer id by the time a claim may take it (zset)
 * ARGV      pairs: timer id, the lease end its claim set as its score (see claim-timers.lua)
 * returns   how many timers were removed
 * ```
 *
 * A commit that scheduled the timer again after it was claimed (same id, a new due time: a
 * heartbeat that moved its deadline) changed its score; that timer is a new one and stays. So
 * does a timer whose lease ran out and that another claimer took since (a new lease end).
 */
export const COMPLETE_TIMERS_SCRIPT = `#!lua
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
return removed
`;
