/**
 * `claim.lua`: reclaims entries of the group that nobody acknowledged within the visibility
 * timeout (their consumer died or hung, or their retry is due), for this consumer.
 *
 * ```
 * KEYS[1]   the topic's stream
 * KEYS[2]   the topic's dead-letter stream
 * ARGV[1]   group
 * ARGV[2]   consumer taking the entries
 * ARGV[3]   min idle time (ms): the visibility timeout
 * ARGV[4]   XAUTOCLAIM cursor ('0-0' to start over)
 * ARGV[5]   max entries to take
 * ARGV[6]   max deliveries: an entry whose last delivery was already the last allowed one is
 *           dead-lettered instead of delivered again
 * ARGV[7]   time (ms since the epoch) for such dead letters
 * ARGV[8]   dead letters kept
 * returns   { next cursor, { entry id, delivery count, `d` bytes (nil if none),
 *             `group` field (nil if none), ... }, number of entries dead-lettered }
 * ```
 *
 * XAUTOCLAIM raises each claimed entry's delivery count; the new count is read back from
 * XPENDING, so the handler sees the same count Redis holds (first delivery = 1).
 *
 * A replayed dead letter of another group (its `group` field names another one: see
 * `replay.lua`) is acknowledged here and not returned, whatever its count: it was never this
 * group's to handle, so neither a delivery nor a dead letter. One with an empty `group` field is
 * returned, for the subscription to dead-letter as malformed.
 */
export const CLAIM_SCRIPT = `#!lua
local stream, dead, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local maxDeliveries = tonumber(ARGV[6])
local reply = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
local deadCount = 0
for _, entry in ipairs(reply[2]) do
  local id, fields = entry[1], entry[2]
  local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
  if pending then
    local count = pending[4]
    local data, target = false, false
    if fields then
      for j = 1, #fields, 2 do
        if fields[j] == 'd' then
          data = fields[j + 1]
        elseif fields[j] == 'group' then
          target = fields[j + 1]
        end
      end
    end
    if target and target ~= '' and target ~= group then
      redis.call('XACK', stream, group, id)
    elseif count > maxDeliveries then
      local last = count - 1
      redis.call('XADD', dead, 'MAXLEN', ARGV[8], '*', 'd', data or '', 'group', group,
        'error', 'not acknowledged within the visibility timeout after ' .. last .. ' deliveries',
        'count', last, 'at', ARGV[7], 'source', id)
      redis.call('XACK', stream, group, id)
      deadCount = deadCount + 1
    else
      out[#out + 1] = id
      out[#out + 1] = count
      out[#out + 1] = data
      out[#out + 1] = target
    end
  end
end
return { reply[1], out, deadCount }
`;
