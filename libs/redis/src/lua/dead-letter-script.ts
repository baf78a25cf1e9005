/**
 * `dead-letter.lua`: moves the current delivery's entry to the topic's dead-letter stream and
 * acknowledges it, atomically (both keys share the topic's hash tag).
 *
 * ```
 * KEYS[1]   the topic's stream
 * KEYS[2]   the topic's dead-letter stream
 * ARGV[1]   group
 * ARGV[2]   consumer that owns the delivery
 * ARGV[3]   entry id
 * ARGV[4]   delivery count of the delivery
 * ARGV[5]   error text
 * ARGV[6]   time of death (ms since the epoch)
 * ARGV[7]   dead letters kept (the oldest beyond this are dropped)
 * returns   the dead letter's id, or nil when the delivery was superseded (nothing changed)
 * ```
 *
 * The dead letter holds the entry's raw `d` bytes exactly as published (empty when the entry has
 * no `d` field), plus group, error, count, at and source (the entry id).
 */
export const DEAD_LETTER_SCRIPT = `#!lua
local stream, dead, group, consumer, id = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
if not pending or pending[2] ~= consumer or pending[4] ~= tonumber(ARGV[4]) then
  return false
end
local data = ''
local entry = redis.call('XRANGE', stream, id, id)[1]
if entry then
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then
      data = fields[i + 1]
      break
    end
  end
end
local deadId = redis.call('XADD', dead, 'MAXLEN', ARGV[7], '*',
  'd', data, 'group', group, 'error', ARGV[5], 'count', ARGV[4], 'at', ARGV[6], 'source', id)
redis.call('XACK', stream, group, id)
return deadId
`;
