/**
 * `replay.lua`: publishes a dead letter's bytes to its topic again and removes the dead letter,
 * atomically (both keys share the topic's hash tag).
 *
 * ```
 * KEYS[1]   the topic's stream
 * KEYS[2]   the topic's dead-letter stream
 * ARGV[1]   dead letter id
 * returns   the new entry's id, or nil when there is no such dead letter
 * ```
 *
 * The new entry is a new message for every group: delivered again with a fresh delivery count.
 */
export const REPLAY_SCRIPT = `#!lua
local stream, dead, id = KEYS[1], KEYS[2], ARGV[1]
local entry = redis.call('XRANGE', dead, id, id)[1]
if not entry then
  return false
end
local data = ''
local fields = entry[2]
for i = 1, #fields, 2 do
  if fields[i] == 'd' then
    data = fields[i + 1]
    break
  end
end
local newId = redis.call('XADD', stream, '*', 'd', data)
redis.call('XDEL', dead, id)
return newId
`;
