/**
 * `get-run.lua`: a consistent snapshot of a run: version, JSON and outbox read together (two
 * plain reads could straddle a compare-and-set).
 *
 * ```
 * KEYS[1]   <p>:{<txId>}:run      the run's record (hash)
 * KEYS[2]   <p>:{<txId>}:outbox   the run's outbox (list)
 * returns   {version, run JSON, outbox item...}, or nil when there is no such run
 * ```
 */
export const GET_RUN_SCRIPT = `
local record = redis.call('HMGET', KEYS[1], 'v', 'run')
if not record[1] then
  return false
end
local out = {record[1], record[2]}
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #items do
  out[#out + 1] = items[i]
end
return out
`;
