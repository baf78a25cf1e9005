/**
 * `ack.lua`: acknowledges a batch of deliveries of one consumer, each only if it is still the
 * current delivery of its entry.
 *
 * ```
 * KEYS[1]   the topic's stream
 * ARGV[1]   group
 * ARGV[2]   consumer that handled the deliveries
 * ARGV[3..] pairs: entry id, delivery count of the delivery being acknowledged
 * returns   the number of entries acknowledged
 * ```
 *
 * A delivery is current while the pending entries list names this consumer and this delivery
 * count. An entry reclaimed since (by another consumer, or by this one again, which raises the
 * count) is skipped: a late ack from a superseded handler must not settle the newer delivery.
 */
export const ACK_SCRIPT = `
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ids = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
  if pending and pending[2] == consumer and pending[4] == tonumber(ARGV[i + 1]) then
    ids[#ids + 1] = id
  end
end
if #ids == 0 then
  return 0
end
return redis.call('XACK', stream, group, unpack(ids))
`;
