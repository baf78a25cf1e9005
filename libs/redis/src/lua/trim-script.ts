/**
 * `trim.lua`: drops the entries of a topic's stream that no group can still need, and never one
 * that is unacknowledged or unread.
 *
 * ```
 * KEYS[1]   the topic's stream
 * ARGV[1]   entries kept while the stream has no group at all (for groups created later)
 * returns   the number of entries removed
 * ```
 *
 * With groups, the stream is trimmed (XTRIM MINID) to the smallest, over the groups, of the
 * group's last-delivered id and its oldest pending id: everything before it was delivered to
 * every group and acknowledged. Reading the groups and trimming in one script leaves no window
 * for a group to appear in between. Without groups: XTRIM MAXLEN ~ ARGV[1].
 */
export const TRIM_SCRIPT = `#!lua
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then
  return 0
end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then
  return redis.call('XTRIM', stream, 'MAXLEN', '~', ARGV[1])
end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
local min = nil
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do
    info[group[i]] = group[i + 1]
  end
  local keep = info['last-delivered-id']
  if info['pending'] > 0 then
    local oldest = redis.call('XPENDING', stream, info['name'])[2]
    if oldest and less(oldest, keep) then
      keep = oldest
    end
  end
  if min == nil or less(keep, min) then
    min = keep
  end
end
return redis.call('XTRIM', stream, 'MINID', min)
`;
