import { TERMINAL_RUN_STATES } from '@multiagents/contracts';

/** Return code of `commit.lua`: written. */
export const COMMIT_WRITTEN = 1;
/** Return code of `commit.lua`: not written (a run exists at create; a stale revision at commit). */
export const COMMIT_REFUSED = 0;
/** Return code of `commit.lua`: no such run (commit mode only). */
export const COMMIT_UNKNOWN_RUN = -1;

/** Index of the first command stream in KEYS (1-based, as Lua counts). */
export const COMMIT_FIRST_COMMAND_KEY = 6;

const terminal = [...TERMINAL_RUN_STATES].map((state) => `['${state}'] = true`).join(', ');

/**
 * `commit.lua`: one transition of one run, as one atomic write (SPEC §4, issue 8). Every key is in
 * the run's partition (one hash tag). Everything is validated and read before the first write, so
 * bad input or a stale revision changes nothing; the script is declared with a `#!lua` shebang so
 * Redis refuses it up front (not half-way) when it is out of memory or cannot persist.
 *
 * ```
 * KEYS[1]    <prefix>:{p<i>}:run:<txId>   the run (hash)
 * KEYS[2]    <prefix>:{p<i>}:             the partition's base: the listing indexes are
 *                                         base..'all', base..'st:'..state, base..'wf:'..workflowId
 * KEYS[3]    <prefix>:{p<i>}:timers       timer id by due time (zset)
 * KEYS[4]    <prefix>:{p<i>}:x:events     lifecycle events (stream)
 * KEYS[5]    <prefix>:{p<i>}:x:results    where ARGV[9] (the result that caused this) was read
 * KEYS[6..]  <prefix>:{p<i>}:x:commands.<worker>, one per worker this transition commands
 * ARGV[1]    'create' (create-if-absent, version 1) or 'commit' (compare-and-set)
 * ARGV[2]    txId
 * ARGV[3]    expected revision ('' at create)
 * ARGV[4]    new revision: a token never used before (not a counter: see RunRevision)
 * ARGV[5]    state after the transition
 * ARGV[6]    header JSON (field h)
 * ARGV[7]    TTL in ms when the run is now terminal, '' otherwise
 * ARGV[8]    events stream MAXLEN (approximate)
 * ARGV[9]    result entry id to XACK on KEYS[5] ('' for none) and ARGV[10] its group
 * ARGV[11]   meta JSON (field m), ARGV[12] createdAt, ARGV[13] workflowId   (create only, else '')
 * ARGV[14]   P, the prefix's partition count: fnv1a32(txId) mod P must be the base's partition
 * ARGV[15]   n, then n pairs: step name, step record JSON (fields s:<name>)
 *            m, then m pairs: KEYS index of the command's stream, command bytes (field d)
 *            event bytes ('' for none)
 *            s, then s pairs: timer id, due time (ms)       scheduled (added or moved)
 *            c, then c timer ids                             cancelled
 * returns    { 1, version }    written (create: created at version 1)
 *            { 0, version }    not written: create found the run (its version), or commit's
 *                              expected revision is not the stored one (the stored version)
 *            { -1 }            commit of an unknown run (nothing written)
 *            error 'ERR multiagents commit: bad <what>' for malformed arguments, or keys that are
 *            not all the run's own in its partition (nothing written)
 * ```
 *
 * Writes: HSET of the header, the changed step records, version, revision and state (meta and
 * createdAt at create only); XADD of each command and of the event; ZREM / ZADD of the timers;
 * the run moves between state indexes only when its state changed (create adds it to `all`, its
 * state and its workflow); PEXPIRE when it becomes terminal, PERSIST when an operator reopens a
 * terminal run; XACK of the result. The ack is not guarded by owner and delivery count like the
 * bus's acks: this write is the result's whole effect, so whoever holds the entry now may drop it
 * (a redelivered copy is then a duplicate the engine ignores).
 */
export const COMMIT_SCRIPT = `#!lua
local TERMINAL = { ${terminal} }
local run, base, timers, events, results = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local function bad(what)
  return redis.error_reply('ERR multiagents commit: bad ' .. what)
end
local mode, txId, expected, revision, state, header = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl, maxlen, ackId, ackGroup = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local meta, createdAt, workflowId = ARGV[11], ARGV[12], ARGV[13]
if mode ~= 'create' and mode ~= 'commit' then return bad('mode') end
if not txId or txId == '' or not revision or revision == '' then return bad('txId or revision') end
if not state or state == '' or not header or header == '' then return bad('state or header') end
if ttl ~= '' and not tonumber(ttl) then return bad('ttl') end
if not tonumber(maxlen) then return bad('maxlen') end
if ackId ~= '' and (not string.match(ackId, '^%d+%-%d+$') or ackGroup == '') then return bad('ack') end
if mode == 'create' and (meta == '' or not tonumber(createdAt) or workflowId == '') then
  return bad('create fields')
end
-- Every key must be this run's, in this run's partition: hash(txId) mod P, the same FNV-1a as
-- RedisKeys.partitionOf (the base carries the partition's hash tag).
local partitions = tonumber(ARGV[14])
local partition = tonumber(string.match(base, '{p(%d+)}:$') or '')
if not partitions or partitions < 1 or not partition then return bad('partition') end
-- With one partition every txId hashes to 0: the hash (a tenth of this script's time) is skipped.
if partitions == 1 then
  if partition ~= 0 then return bad("partition: the run's txId belongs to another one") end
else
  local hash = bit.tobit(0x811c9dc5)
  for c = 1, #txId do
    hash = bit.bxor(hash, string.byte(txId, c))
    hash = bit.tobit(bit.lshift(hash, 24) + hash * 403)
  end
  if hash < 0 then hash = hash + 4294967296 end
  if hash % partitions ~= partition then return bad("partition: the run's txId belongs to another one") end
end
if run ~= base .. 'run:' .. txId or timers ~= base .. 'timers' or events ~= base .. 'x:events'
  or results ~= base .. 'x:results' then
  return bad("keys: not all in the run's partition")
end
for k = ${COMMIT_FIRST_COMMAND_KEY}, #KEYS do
  if string.sub(KEYS[k], 1, #base + 11) ~= base .. 'x:commands.' then return bad('command stream key') end
end

local i = 15
local function count()
  local n = tonumber(ARGV[i])
  if not n or n < 0 or n ~= math.floor(n) then return nil end
  i = i + 1
  return n
end
local fields = { 'h', header, 'st', state, 'r', revision }
local n = count()
if not n or i + 2 * n - 1 > #ARGV then return bad('steps') end
for j = 1, n do
  if ARGV[i] == '' then return bad('step name') end
  fields[#fields + 1] = 's:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  i = i + 2
end
local commands = {}
n = count()
if not n or i + 2 * n - 1 > #ARGV then return bad('commands') end
for j = 1, n do
  local k = tonumber(ARGV[i])
  if not k or k < ${COMMIT_FIRST_COMMAND_KEY} or k > #KEYS or k ~= math.floor(k) then return bad('command stream') end
  commands[j] = { KEYS[k], ARGV[i + 1] }
  i = i + 2
end
local event = ARGV[i]
if event == nil then return bad('event') end
i = i + 1
local schedule = {}
n = count()
if not n or i + 2 * n - 1 > #ARGV then return bad('schedule') end
for j = 1, n do
  local due = tonumber(ARGV[i + 1])
  if ARGV[i] == '' or not due or due ~= due then return bad('timer') end
  schedule[#schedule + 1] = ARGV[i + 1]
  schedule[#schedule + 1] = ARGV[i]
  i = i + 2
end
local cancel = {}
n = count()
if not n or i + n - 1 ~= #ARGV then return bad('cancel') end
for j = 1, n do
  cancel[j] = ARGV[i]
  i = i + 1
end

-- Reads: nothing has been written yet.
local version, previous, created
if mode == 'create' then
  if redis.call('EXISTS', run) == 1 then
    return { 0, tonumber(redis.call('HGET', run, 'v')) }
  end
  version = 1
  created = createdAt
  fields[#fields + 1] = 'm'
  fields[#fields + 1] = meta
  fields[#fields + 1] = 'c'
  fields[#fields + 1] = createdAt
else
  local current = redis.call('HMGET', run, 'r', 'st', 'v', 'c')
  if not current[1] then return { -1 } end
  if current[1] ~= expected then return { 0, tonumber(current[3]) } end
  previous = current[2]
  version = tonumber(current[3]) + 1
  created = current[4]
end
fields[#fields + 1] = 'v'
fields[#fields + 1] = version

-- Writes.
redis.call('HSET', run, unpack(fields))
if mode == 'create' then
  redis.call('ZADD', base .. 'all', created, txId)
  redis.call('ZADD', base .. 'st:' .. state, created, txId)
  redis.call('ZADD', base .. 'wf:' .. workflowId, created, txId)
elseif previous ~= state then
  redis.call('ZREM', base .. 'st:' .. previous, txId)
  redis.call('ZADD', base .. 'st:' .. state, created, txId)
end
if ttl ~= '' then
  if mode == 'create' or previous ~= state then redis.call('PEXPIRE', run, ttl) end
elseif previous and TERMINAL[previous] and not TERMINAL[state] then
  redis.call('PERSIST', run)
end
for _, command in ipairs(commands) do
  redis.call('XADD', command[1], '*', 'd', command[2])
end
if event ~= '' then
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'd', event)
end
if #cancel > 0 then redis.call('ZREM', timers, unpack(cancel)) end
if #schedule > 0 then redis.call('ZADD', timers, unpack(schedule)) end
if ackId ~= '' then redis.call('XACK', results, ackGroup, ackId) end
return { 1, version }
`;
