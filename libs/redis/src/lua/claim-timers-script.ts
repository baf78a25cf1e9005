/**
 * `claim-timers.lua`: claims one partition's due timers under a lease, atomically, so a timer
 * fires once across orchestrators within a lease.
 *
 * ```
 * KEYS[1]   <prefix>:{p<i>}:timers   timer id by the time a claim may take it (zset)
 * ARGV[1]   now, in ms: timers due at it or before are taken
 * ARGV[2]   how many at most (>= 1)
 * ARGV[3]   lease end, in ms (now + lease, computed by the caller)
 * returns   { id, due time, id, due time, ... }, earliest first (ties by id)
 * ```
 *
 * A timer id says everything about the timer (`parseTimerId`), so the zset is all there is. A
 * claimed timer's score moves to the lease end: hidden from other claimers until then, it comes
 * back if its claimer crashed before a commit cancelled it or `completeTimers` removed it.
 */
export const CLAIM_TIMERS_SCRIPT = `#!lua
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]), 'WITHSCORES')
if #due == 0 then return due end
local leased = {}
for i = 1, #due, 2 do
  leased[#leased + 1] = ARGV[3]
  leased[#leased + 1] = due[i]
end
redis.call('ZADD', KEYS[1], 'XX', unpack(leased))
return due
`;
