import { UNINDEX_EXPIRED_LUA } from './prune-index-script';

/**
 * `drop-expired.lua`: drops from every index of one partition the entries list() found without a
 * run (it expired), so that they stop costing a read on every listing and stop being counted by
 * `countByState`. Dropping them from the one index list() read would leave them in the others,
 * where `prune-index.lua` (which sweeps `all`) could never find them again.
 *
 * ```
 * KEYS[1]        <prefix>:{p<i>}:   the partition's base (see prune-index.lua)
 * ARGV[1]        n, how many txIds follow
 * ARGV[2..n+1]   the txIds met without a run
 * ARGV[n+2..]    the registered workflow ids (their indexes may hold the runs too)
 * returns        entries removed (a run that exists again is left alone)
 * ```
 */
export const DROP_EXPIRED_SCRIPT = `#!lua
${UNINDEX_EXPIRED_LUA}
local base = KEYS[1]
local n = tonumber(ARGV[1])
if not n or n < 0 or n + 1 > #ARGV then
  return redis.error_reply('ERR multiagents drop-expired: bad txId count')
end
local removed = 0
for i = 2, n + 1 do
  removed = removed + unindexExpired(base, ARGV[i], n + 2)
end
return removed
`;
