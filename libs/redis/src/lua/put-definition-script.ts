/**
 * `put-definition.lua`: stores a workflow definition version, immutable once stored.
 *
 * ```
 * KEYS[1]   <prefix>:{defs}:d:<workflowId>       "<version>" -> canonical JSON, "latest" (hash)
 * KEYS[2]   <prefix>:{defs}:ids                  registered workflow ids (set)
 * ARGV[1]   version
 * ARGV[2]   the definition's canonical JSON (sorted keys: equal content, equal string)
 * ARGV[3]   workflow id
 * returns   1 stored; 0 the same content was stored already; -1 different content is stored
 *           under this id and version (nothing changed)
 * ```
 */
export const PUT_DEFINITION_SCRIPT = `#!lua
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then
    return 0
  end
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local latest = redis.call('HGET', KEYS[1], 'latest')
if not latest or tonumber(latest) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'latest', ARGV[1])
end
redis.call('SADD', KEYS[2], ARGV[3])
return 1
`;
