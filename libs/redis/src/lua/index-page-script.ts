/**
 * `index-page.lua`: the next entries of a listing index, newest first, strictly after a cursor.
 *
 * ```
 * KEYS[1]   a listing index: <prefix>:{p<i>}:all, :st:<state> or :wf:<workflowId> (zset)
 * ARGV[1]   highest createdAt to return (inclusive), or '+inf'
 * ARGV[2]   lowest createdAt to return (inclusive), or '-inf'
 * ARGV[3]   cursor createdAt, or '' to start at the newest
 * ARGV[4]   cursor txId
 * ARGV[5]   how many entries at most
 * returns   {txId, createdAt, txId, createdAt, ...}
 * ```
 *
 * Order is createdAt descending, then txId descending by bytes, which is the zset's own reverse
 * order, so a page is one ZREVRANGE by rank. The start rank comes from the cursor's own entry
 * when it is still there; otherwise it is counted, and members tied with the cursor's createdAt
 * are compared byte by byte here (Lua's `<` on strings follows the server's locale).
 */
export const INDEX_PAGE_SCRIPT = `#!lua flags=no-writes
local key = KEYS[1]
local function after(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return #a > #b
end
local start = 0
if ARGV[1] ~= '+inf' then
  start = redis.call('ZCOUNT', key, '(' .. ARGV[1], '+inf')
end
if ARGV[3] ~= '' then
  local from
  local rank = redis.call('ZREVRANK', key, ARGV[4])
  local score = redis.call('ZSCORE', key, ARGV[4])
  if rank and tonumber(score) == tonumber(ARGV[3]) then
    from = rank + 1
  else
    from = redis.call('ZCOUNT', key, '(' .. ARGV[3], '+inf')
    local tied = redis.call('ZRANGEBYSCORE', key, ARGV[3], ARGV[3])
    for _, member in ipairs(tied) do
      if after(member, ARGV[4]) then
        from = from + 1
      end
    end
  end
  if from > start then
    start = from
  end
end
local entries = redis.call('ZREVRANGE', key, start, start + tonumber(ARGV[5]) - 1, 'WITHSCORES')
if ARGV[2] == '-inf' then
  return entries
end
local lowest = tonumber(ARGV[2])
local out = {}
for i = 1, #entries, 2 do
  if tonumber(entries[i + 1]) < lowest then
    break
  end
  out[#out + 1] = entries[i]
  out[#out + 1] = entries[i + 1]
end
return out
`;
