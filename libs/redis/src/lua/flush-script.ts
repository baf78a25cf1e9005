/**
 * `flush.lua`: what one process sends to one slot in one event-loop turn, in one round trip:
 * stream appends (publishes) and guarded acknowledgements (handlers that resolved, and the
 * command a worker's result answers), in that order.
 *
 * ```
 * KEYS[1..]  streams, all under one hash tag (one partition, or one unpartitioned topic)
 * ARGV[1]    a, then a triples: KEYS index, MAXLEN ('' for none; approximate), entry bytes (d)
 *            g, then g ack groups: KEYS index, group, consumer, k, then k pairs: entry id,
 *            delivery count of the delivery being acknowledged
 * returns    the number of entries acknowledged
 *            error 'ERR multiagents flush: bad <what>' for malformed arguments (nothing written)
 * ```
 *
 * A delivery is acknowledged only while the group's pending entries list still names its
 * consumer and its delivery count: an entry reclaimed since (by another consumer, or by this one
 * again, which raises the count) is left alone, so a late ack of a superseded handler cannot
 * settle the newer delivery. One XPENDING per group reads the consumer's pending entries between
 * the batch's lowest and highest ids (with room for entries of the consumer that are not in the
 * batch); an id it did not cover is looked up on its own.
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
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(ams, aseq, bms, bseq)
  return ams < bms or (ams == bms and aseq < bseq)
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
  local stream, group, consumer, k = key(ARGV[i]), ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if not stream or not group or not consumer or not k or k < 1 or i + 3 + 2 * k > #ARGV then
    return bad('ack group')
  end
  i = i + 4
  local ids, counts = {}, {}
  local lowMs, lowSeq, highMs, highSeq, low, high
  for e = 1, k do
    local id, count = ARGV[i], tonumber(ARGV[i + 1])
    local ms, seq = parse(id)
    if not ms or not count then return bad('ack') end
    ids[e], counts[id] = id, count
    if not low or less(ms, seq, lowMs, lowSeq) then low, lowMs, lowSeq = id, ms, seq end
    if not high or less(highMs, highSeq, ms, seq) then high, highMs, highSeq = id, ms, seq end
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
    local complete = #pending < bound
    local ok = {}
    for _, id in ipairs(ids) do
      local count = current[id]
      if count == nil and not complete then
        local one = redis.call('XPENDING', stream, group, id, id, 1, consumer)[1]
        if one then count = one[4] end
      end
      if count ~= nil and count == counts[id] then ok[#ok + 1] = id end
    end
    if #ok > 0 then acked = acked + redis.call('XACK', stream, group, unpack(ok)) end
  end
end
return acked
`;
