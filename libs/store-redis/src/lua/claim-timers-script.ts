/**
 * `claim-timers.lua`: claims due timers under a lease, atomically, so one timer fires once across
 * orchestrators within a lease.
 *
 * ```
 * KEYS[1]   <p>:{timers}:due    timer id by the time a claim may take it (zset)
 * KEYS[2]   <p>:{timers}:data   timer id -> timer JSON (hash)
 * ARGV[1]   now, in ms: timers due at it or before are taken
 * ARGV[2]   how many at most
 * ARGV[3]   lease end, in ms (now + lease, computed by the caller: no float arithmetic here)
 * returns   the claimed timers' JSON, earliest due first (ties by id)
 * ```
 *
 * A claimed timer's score moves to the lease end: it is hidden from other claimers until then and
 * comes back if its claimer crashed before completing it.
 */
export const CLAIM_TIMERS_SCRIPT = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local data = redis.call('HGET', KEYS[2], id)
  if data then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id)
    out[#out + 1] = data
  else
    -- A due entry without contents cannot fire: drop it rather than hand it out forever.
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`;
