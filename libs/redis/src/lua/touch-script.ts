/**
 * `touch.lua`: sets how idle the current delivery's entry looks, keeping its owner and its
 * delivery count (`XCLAIM … IDLE <ms> JUSTID` to the same consumer).
 *
 * ```
 * KEYS[1]   the topic's stream
 * ARGV[1]   group
 * ARGV[2]   consumer that owns the delivery
 * ARGV[3]   entry id
 * ARGV[4]   delivery count of the delivery
 * ARGV[5]   idle time to set, in ms
 * returns   1 when set, 0 when the delivery was superseded (nothing changed)
 * ```
 *
 * `extend()` passes 0: the visibility timeout starts again. A failed delivery passes
 * `visibilityTimeoutMs - retryDelayMs`, so the reclaimers (XAUTOCLAIM with min-idle =
 * visibilityTimeoutMs) see it as claimable exactly when its retry is due: Streams have no delayed
 * nack, and this keeps the retry durable if the consumer dies before redelivering it itself.
 */
export const TOUCH_SCRIPT = `#!lua
local stream, group, consumer, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
if not pending or pending[2] ~= consumer or pending[4] ~= tonumber(ARGV[4]) then
  return 0
end
redis.call('XCLAIM', stream, group, consumer, 0, id, 'IDLE', ARGV[5], 'JUSTID')
return 1
`;
