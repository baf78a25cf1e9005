/**
 * `forget-consumer.lua`: deletes a closed subscription's consumer from its group, only when
 * nothing is pending under it. Consumer names are unique per process, so without it every
 * restart would leave one more consumer in every group of every stream it read.
 *
 * ```
 * KEYS[1]   the topic's stream
 * ARGV[1]   group
 * ARGV[2]   consumer
 * returns   1 when deleted, 0 when entries are still pending under it (kept), -1 when the stream
 *           or group does not exist
 * ```
 *
 * XGROUP DELCONSUMER drops the consumer's pending entries with it: they would never be delivered
 * again. The check and the delete run in one script, so no entry can become pending in between.
 */
export const FORGET_CONSUMER_SCRIPT = `#!lua
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(pending) == 'table' and pending.err then return -1 end
if #pending > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`;
