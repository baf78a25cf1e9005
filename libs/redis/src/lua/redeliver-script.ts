/**
 * `redeliver.lua`: takes back entries of this consumer whose retry delay is over, as new
 * deliveries (`XCLAIM` to itself, which raises each entry's delivery count by one).
 *
 * ```
 * KEYS[1]   the topic's stream
 * ARGV[1]   group
 * ARGV[2]   consumer
 * ARGV[3..] pairs: entry id, delivery count of the delivery that failed
 * returns   a flat array: entry id, new delivery count, `d` bytes (nil if none), `group` field
 *           (nil if none: see `replay.lua`), for each entry that was still this consumer's at
 *           that count
 * ```
 *
 * An entry another consumer reclaimed meanwhile (or that was deleted) is left alone.
 */
export const REDELIVER_SCRIPT = `#!lua
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local count = tonumber(ARGV[i + 1])
  local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
  if pending and pending[2] == consumer and pending[4] == count then
    local claimed = redis.call('XCLAIM', stream, group, consumer, 0, id)[1]
    if claimed then
      local data, target = false, false
      local fields = claimed[2]
      if fields then
        for j = 1, #fields, 2 do
          if fields[j] == 'd' then
            data = fields[j + 1]
          elseif fields[j] == 'group' then
            target = fields[j + 1]
          end
        end
      end
      out[#out + 1] = id
      out[#out + 1] = count + 1
      out[#out + 1] = data
      out[#out + 1] = target
    end
  end
end
return out
`;
