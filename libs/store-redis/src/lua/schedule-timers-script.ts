/**
 * `schedule-timers.lua`: adds or replaces timers by id.
 *
 * ```
 * KEYS[1]   <p>:{timers}:due    timer id by the time a claim may take it (zset)
 * KEYS[2]   <p>:{timers}:data   timer id -> timer JSON (hash)
 * ARGV      triples: timer id, due time in ms, timer JSON
 * returns   the number of timers written
 * ```
 *
 * Rescheduling replaces the timer outright: its score becomes the new due time, so a lease a
 * claimer held on the old one does not carry over.
 */
export const SCHEDULE_TIMERS_SCRIPT = `
for i = 1, #ARGV, 3 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
return #ARGV / 3
`;
