/**
 * `clear-outbox.lua`: drops a run's outbox entries written at or before a version.
 *
 * ```
 * KEYS[1]   <p>:{<txId>}:outbox   the run's outbox (list of `<version>|<effect JSON>`)
 * ARGV[1]   version: entries written at it or before are done
 * returns   the number of entries left
 * ```
 *
 * Entries are appended in version order, so the ones to drop are a prefix of the list.
 */
export const CLEAR_OUTBOX_SCRIPT = `
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local upTo = tonumber(ARGV[1])
local drop = 0
for i = 1, #items do
  local version = tonumber(string.match(items[i], '^(%d+)|'))
  if version == nil or version > upTo then
    break
  end
  drop = i
end
if drop == #items then
  redis.call('DEL', KEYS[1])
elseif drop > 0 then
  redis.call('LTRIM', KEYS[1], drop, -1)
end
return #items - drop
`;
