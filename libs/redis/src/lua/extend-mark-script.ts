/**
 * `extend-mark.lua`: sets the time to live of a mark if it still holds the token its taker set (a
 * compare-and-PEXPIRE, so a replica whose lease ran out never extends the lease of the replica
 * that took the mark after it). It runs once per stuck point, never per step.
 *
 * ```
 * KEYS[1]   the mark (one key: any Redis Cluster node that holds it runs the script)
 * ARGV[1]   the token of the hold to extend (the value markOnce set)
 * ARGV[2]   its new time to live, in ms
 * returns   1 when extended, 0 when the mark is gone (the lease ran out) or holds another token
 * ```
 */
export const EXTEND_MARK_SCRIPT = `#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;
