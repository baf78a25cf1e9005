/**
 * `unmark-outbox.lua`: removes a run's pending-outbox marker once what it marked is done.
 *
 * ```
 * KEYS[1]   <p>:{outbox}:pending   txId by time of its first pending write (zset)
 * KEYS[2]   <p>:{outbox}:marks     txId -> "<version>|<ms>" (hash)
 * ARGV[1]   txId
 * ARGV[2]   version: the run's outbox holds nothing written at or before it
 * ARGV[3]   abandoned before, in ms: a mark last set before this is dropped whatever its
 *           version (its writer is presumed dead), or '' for no such fallback
 * returns   1 removed (or there was none); 0 kept
 * ```
 *
 * Kept while the highest marked version is above ARGV[2]: a writer of that version has set the
 * marker and may not have written yet. Marks only grow, so a late, stale writer cannot lower one.
 */
export const UNMARK_OUTBOX_SCRIPT = `
local mark = redis.call('HGET', KEYS[2], ARGV[1])
if mark then
  local bar = string.find(mark, '|', 1, true)
  local marked = tonumber(string.sub(mark, 1, bar - 1))
  local markedAt = tonumber(string.sub(mark, bar + 1))
  if marked > tonumber(ARGV[2]) and (ARGV[3] == '' or markedAt >= tonumber(ARGV[3])) then
    return 0
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;
