/**
 * `drop-run-index.lua`: removes a run whose record is gone (expired after its retention, or never
 * created) from every listing index.
 *
 * ```
 * KEYS[1]       <p>:{runs}:meta              txId -> "<version>|<state>|<ms>|<workflowId>" (hash)
 * KEYS[2]       <p>:{runs}:all               every run (zset)
 * KEYS[3]       <p>:{runs}:wf:<workflowId>   the run's workflow index (KEYS[2] again if unknown)
 * KEYS[4..13]   <p>:{runs}:state:<state>     every state index (zsets)
 * ARGV[1]       txId
 * ARGV[2]       in-flight cutoff, in ms: an unconfirmed entry (meta version 0) written at or
 *               after it is kept, its create may still be on its way
 * returns       1 dropped, 0 kept
 * ```
 */
export const DROP_RUN_INDEX_SCRIPT = `
local txId = ARGV[1]
local meta = redis.call('HGET', KEYS[1], txId)
if meta then
  local first = string.find(meta, '|', 1, true)
  local second = string.find(meta, '|', first + 1, true)
  local third = string.find(meta, '|', second + 1, true)
  local version = tonumber(string.sub(meta, 1, first - 1))
  local at = tonumber(string.sub(meta, second + 1, third - 1))
  if version == 0 and at >= tonumber(ARGV[2]) then
    return 0
  end
end
for i = 2, #KEYS do
  redis.call('ZREM', KEYS[i], txId)
end
redis.call('HDEL', KEYS[1], txId)
return 1
`;
