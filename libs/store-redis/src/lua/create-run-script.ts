/**
 * `create-run.lua`: stores a new run at version 1 with its outbox, unless the txId is taken.
 *
 * ```
 * KEYS[1]   <p>:{<txId>}:run      the run's record (hash)
 * KEYS[2]   <p>:{<txId>}:outbox   the run's outbox (list)
 * ARGV[1]   run JSON
 * ARGV[2]   run state
 * ARGV[3]   idempotency key the run was started with, or '' (kept as the back-reference `ik`)
 * ARGV[4]   retention in ms for a run created terminal, or 0 (keep)
 * ARGV[5..] outbox items, `1|<effect JSON>`
 * returns   1 created; 0 a run with this txId exists; -1 the txId was fenced off (`void`)
 * ```
 *
 * A `void` record is what an idempotent create leaves for a creator it presumed crashed, so that
 * creator, if it was only slow, cannot create its run afterwards (see RedisStateStore.create).
 */
export const CREATE_RUN_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HEXISTS', KEYS[1], 'void') == 1 then
    return -1
  end
  return 0
end
redis.call('HSET', KEYS[1], 'v', 1, 'run', ARGV[1], 'st', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'ik', ARGV[3])
end
-- Nothing may survive from an earlier holder of this txId (its record expired first).
redis.call('DEL', KEYS[2])
for i = 5, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
`;
