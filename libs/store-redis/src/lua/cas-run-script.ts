/**
 * `cas-run.lua`: the compare-and-set of a run. Checks the version, writes the run and appends
 * its outbox entries tagged with the new version in one atomic step (SPEC §4).
 *
 * ```
 * KEYS[1]   <p>:{<txId>}:run      the run's record (hash)
 * KEYS[2]   <p>:{<txId>}:outbox   the run's outbox (list)
 * ARGV[1]   expected version
 * ARGV[2]   run JSON
 * ARGV[3]   run state
 * ARGV[4]   retention in ms when the new state is terminal, or 0 (keep; an operator reopening a
 *           terminal run also clears the expiry it had)
 * ARGV[5..] outbox items, `<expected + 1>|<effect JSON>`
 * returns   {new version, previous state, idempotency key or ''} when written;
 *           {0} when the stored version is not the expected one (nothing written);
 *           {-1} when there is no such run (or its txId was fenced off)
 * ```
 *
 * The previous state tells the caller which state index the run leaves; the idempotency key (the
 * run's back-reference to `<p>:idem:{<key>}`) lets it give that mapping the same retention.
 */
export const CAS_RUN_SCRIPT = `
local current = redis.call('HMGET', KEYS[1], 'v', 'st', 'ik')
if not current[1] then
  return {-1}
end
if tonumber(current[1]) ~= tonumber(ARGV[1]) then
  return {0}
end
local version = tonumber(current[1]) + 1
redis.call('HSET', KEYS[1], 'v', version, 'run', ARGV[2], 'st', ARGV[3])
for i = 5, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
return {version, current[2] or '', current[3] or ''}
`;
