/**
 * `replay.lua`: appends a dead letter to its topic's stream again, for the group that
 * dead-lettered it only, and removes the dead letter, atomically (both keys share the topic's
 * hash tag).
 *
 * ```
 * KEYS[1]   the topic's stream
 * KEYS[2]   the topic's dead-letter stream
 * ARGV[1]   dead letter id
 * returns   the new entry's id, or nil when there is no such dead letter
 * ```
 *
 * The new entry holds the dead letter's `d` bytes and its `group` field: that group handles it
 * again, with a fresh delivery count; a consumer of any other group acknowledges it without
 * handing it to its handler, and a tail skips it (see RedisSubscription, RedisTail). A dead letter
 * with no group or an empty one (written by something else) is appended without one: every group
 * gets it, as a published message.
 */
export const REPLAY_SCRIPT = `#!lua
local stream, dead, id = KEYS[1], KEYS[2], ARGV[1]
local entry = redis.call('XRANGE', dead, id, id)[1]
if not entry then
  return false
end
local data, group = '', ''
local fields = entry[2]
for i = 1, #fields, 2 do
  if fields[i] == 'd' then
    data = fields[i + 1]
  elseif fields[i] == 'group' then
    group = fields[i + 1]
  end
end
local newId
if group == '' then
  newId = redis.call('XADD', stream, '*', 'd', data)
else
  newId = redis.call('XADD', stream, '*', 'd', data, 'group', group)
end
redis.call('XDEL', dead, id)
return newId
`;
