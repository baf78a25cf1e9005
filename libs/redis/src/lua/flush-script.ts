/**
 * `flush.lua`: what one process sends to one slot in one event-loop turn, in one round trip:
 * stream appends (publishes) and guarded acknowledgements (handlers that resolved, and the
 * command a worker's result answers), in that order.
 *
 * ```
 * KEYS[1..]  streams, all under one hash tag (one partition, or one unpartitioned topic)
 * ARGV[1]    a, then a triples: KEYS index, MAXLEN ('' for none; approximate), entry bytes (d)
 *            g, then g ack groups: KEYS index, group, consumer, lowest and highest entry id of
 *            the group's acks, k, then k pairs: entry id, delivery count of the delivery being
 *            acknowledged
 * returns    the number of entries acknowledged
 *            error 'ERR multiagents flush: bad <what>' for malformed arguments (nothing written)
 * ```
 *
 * A delivery is acknowledged only while the group's pending entries list still names its
 * consumer and its delivery count: an entry reclaimed since (by another consumer, or by this one
 * again, which raises the count) is left alone, so a late ack of a superseded handler cannot
 * settle the newer delivery. One XPENDING per group reads the consumer's pending entries between
 * the lowest and highest ids the caller gives (with room for entries of the consumer that are not
 * in the batch); an id it did not return is looked up on its own, so a range that misses some ids
 * costs lookups, never a wrong ack (an id that is not a stream id is left alone, as XACK would).
 * The caller computes the range: parsing and comparing every id here cost about as much as the
 * XACK itself.
 */
export const FLUSH_SCRIPT = `#!lua
local function bad(what)
  return redis.error_reply('ERR multiagents flush: bad ' .. what)
end
local function key(index)
  local k = tonumber(index)
  if not k or k < 1 or k > #KEYS or k ~= math.floor(k) then return nil end
  return KEYS[k]
end
local function isId(id)
  return id and string.match(id, '^%d+%-%d+$') ~= nil
end
local i = 1
local adds = {}
local a = tonumber(ARGV[i])
i = i + 1
if not a or a < 0 or a ~= math.floor(a) or i + 3 * a > #ARGV then return bad('adds') end
for j = 1, a do
  local stream = key(ARGV[i])
  local maxlen = ARGV[i + 1]
  if not stream or (maxlen ~= '' and not tonumber(maxlen)) then return bad('add') end
  adds[j] = { stream, maxlen, ARGV[i + 2] }
  i = i + 3
end
local groups = {}
local g = tonumber(ARGV[i])
if not g or g < 0 or g ~= math.floor(g) then return bad('ack groups') end
i = i + 1
for j = 1, g do
  local stream, group, consumer = key(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local low, high, k = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  if not stream or not group or not consumer or not isId(low) or not isId(high)
    or not k or k < 1 or i + 5 + 2 * k > #ARGV then
    return bad('ack group')
  end
  i = i + 6
  local ids, counts = {}, {}
  for e = 1, k do
    local id, count = ARGV[i], tonumber(ARGV[i + 1])
    if not count then return bad('ack') end
    ids[e], counts[id] = id, count
    i = i + 2
  end
  groups[j] = { stream, group, consumer, ids, counts, low, high }
end
if i - 1 ~= #ARGV then return bad('argument count') end

for _, add in ipairs(adds) do
  if add[2] == '' then
    redis.call('XADD', add[1], '*', 'd', add[3])
  else
    redis.call('XADD', add[1], 'MAXLEN', '~', add[2], '*', 'd', add[3])
  end
end
local acked = 0
for _, g in ipairs(groups) do
  local stream, group, consumer, ids, counts = g[1], g[2], g[3], g[4], g[5]
  local bound = #ids + 128
  local pending = redis.pcall('XPENDING', stream, group, g[6], g[7], bound, consumer)
  if type(pending) == 'table' and not pending.err then
    local current = {}
    for _, entry in ipairs(pending) do current[entry[1]] = entry[4] end
    local ok = {}
    for _, id in ipairs(ids) do
      local count = current[id]
      if count == nil then
        -- pcall: an id that is not a stream id is not pending, as XACK would ignore it.
        local one = redis.pcall('XPENDING', stream, group, id, id, 1, consumer)
        if type(one) == 'table' and one[1] then count = one[1][4] end
      end
      if count ~= nil and count == counts[id] then ok[#ok + 1] = id end
    end
    if #ok > 0 then acked = acked + redis.call('XACK', stream, group, unpack(ok)) end
  end
end
return acked
`;
