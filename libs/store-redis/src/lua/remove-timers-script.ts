/**
 * `remove-timers.lua`: removes timers by id (cancelled or completed); unknown ids are ignored.
 *
 * ```
 * KEYS[1]   <p>:{timers}:due    timer id by the time a claim may take it (zset)
 * KEYS[2]   <p>:{timers}:data   timer id -> timer JSON (hash)
 * ARGV      timer ids
 * returns   the number of timers removed
 * ```
 */
export const REMOVE_TIMERS_SCRIPT = `
local removed = 0
for i = 1, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  removed = removed + redis.call('ZREM', KEYS[1], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, last))
end
return removed
`;
