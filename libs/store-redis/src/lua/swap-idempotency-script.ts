/**
 * `swap-idempotency.lua`: compare-and-set of an idempotency key's mapping.
 *
 * ```
 * KEYS[1]   <p>:idem:{<key>}   the mapping (string: txId)
 * ARGV[1]   the txId it is expected to hold
 * ARGV[2]   the txId to put instead, or '' to delete the mapping
 * returns   {1} when swapped; {0, current txId or ''} when it held something else
 * ```
 */
export const SWAP_IDEMPOTENCY_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  return {0, current or ''}
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return {1}
`;
