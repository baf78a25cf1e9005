/**
 * `mark-outbox.lua`: the pending-outbox marker, set BEFORE a write that appends outbox entries
 * (the write is in the run's slot, the marker in the global `{outbox}` slot: one script cannot
 * do both in Redis Cluster).
 *
 * ```
 * KEYS[1]   <p>:{outbox}:pending   txId by time of its first pending write (zset)
 * KEYS[2]   <p>:{outbox}:marks     txId -> "<version>|<ms>" (hash)
 * ARGV[1]   txId
 * ARGV[2]   the version the write will produce if it succeeds
 * ARGV[3]   now, in ms
 * returns   1
 * ```
 *
 * The marker keeps the time of the oldest pending write (ZADD NX). `marks` keeps the highest
 * version ever marked and the time of the latest mark: a marker may only be removed once every
 * marked version is known to be done (see unmark-outbox.lua), so a write in flight, marked but not
 * yet applied, never loses its marker.
 */
export const MARK_OUTBOX_SCRIPT = `
redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[1])
local version = tonumber(ARGV[2])
local mark = redis.call('HGET', KEYS[2], ARGV[1])
if mark then
  local marked = tonumber(string.sub(mark, 1, string.find(mark, '|', 1, true) - 1))
  if marked > version then
    version = marked
  end
end
redis.call('HSET', KEYS[2], ARGV[1], version .. '|' .. ARGV[3])
return 1
`;
