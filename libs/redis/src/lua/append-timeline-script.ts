/**
 * `append-timeline.lua`: adds entries to a run's timeline and restarts its time to live, in one
 * command (the event-monitor writes one per event).
 *
 * ```
 * KEYS[1]   the run's timeline hash
 * ARGV[1]   time to live (ms) from now
 * ARGV[2k], ARGV[2k+1]   (k >= 1) an entry's version and its JSON
 * returns   the number of entries added (a version already there is kept as it was)
 * ```
 *
 * HSETNX per version: a redelivered event changes nothing, and replicas appending at once never
 * overwrite each other.
 */
export const APPEND_TIMELINE_SCRIPT = `#!lua
local added = 0
for i = 2, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return added
`;
