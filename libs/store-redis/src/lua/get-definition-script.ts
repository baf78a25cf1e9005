/**
 * `get-definition.lua`: one version of a workflow definition, or its latest, in one round trip.
 *
 * ```
 * KEYS[1]   <p>:{definitions}:def:<workflowId>   "<version>" -> canonical JSON, "latest" (hash)
 * ARGV[1]   version, or '' for the latest
 * returns   the definition's JSON, or nil
 * ```
 */
export const GET_DEFINITION_SCRIPT = `
local version = ARGV[1]
if version == '' then
  version = redis.call('HGET', KEYS[1], 'latest')
  if not version then
    return false
  end
end
return redis.call('HGET', KEYS[1], version)
`;
