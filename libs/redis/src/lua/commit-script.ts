import { TERMINAL_RUN_STATES } from '@multiagents/contracts';

/** Reply code of one transition in `commit.lua`: written. */
export const COMMIT_WRITTEN = 1;
/** Reply code of one transition in `commit.lua`: not written (a run exists at create; a stale revision at commit). */
export const COMMIT_REFUSED = 0;
/** Reply code of one transition in `commit.lua`: no such run (commit mode only). */
export const COMMIT_UNKNOWN_RUN = -1;

/** Index of the first run or command stream key in KEYS (1-based, as Lua counts). */
const COMMIT_FIRST_OWN_KEY = 5;
/** Number of ARGV entries before the first transition's block. */
const COMMIT_HEAD_ARGS = 3;

const terminal = [...TERMINAL_RUN_STATES].map((state) => `['${state}'] = true`).join(', ');

/**
 * `commit.lua`: the transitions one process commits in one partition during one event-loop turn,
 * each as one atomic write of its run (SPEC §4, issue 8), in one call. Every key is in the
 * partition (one hash tag). Every transition is validated before the first write, so bad input
 * anywhere changes nothing; then each is read and written in turn, and a stale revision refuses
 * that transition alone. The script is declared with a `#!lua` shebang so Redis refuses it up
 * front (not half-way) when it is out of memory or cannot persist.
 *
 * ```
 * KEYS[1]    <prefix>:{p<i>}:             the partition's base: the listing indexes are
 *                                         base..'all', base..'st:'..state, base..'wf:'..workflowId
 * KEYS[2]    <prefix>:{p<i>}:timers       timer id by due time (zset)
 * KEYS[3]    <prefix>:{p<i>}:x:events     lifecycle events (stream)
 * KEYS[4]    <prefix>:{p<i>}:x:results    where the results the transitions acknowledge were read
 * KEYS[5..]  the runs (base..'run:'..txId, hashes) and command streams (base..'x:commands.'..worker)
 *            the transitions name by index
 * ARGV[1]    P, the prefix's partition count: fnv1a32(txId) mod P must be the base's partition
 * ARGV[2]    events stream MAXLEN (approximate)
 * ARGV[3]    t, the number of transitions, then t blocks of:
 *   mode       'create' (create-if-absent, version 1) or 'commit' (compare-and-set)
 *   txId
 *   expected revision ('' at create)
 *   new revision: a token never used before (not a counter: see RunRevision)
 *   state after the transition
 *   header JSON (field h)
 *   TTL in ms when the run is now terminal, '' otherwise
 *   result entry id to XACK on KEYS[4] ('' for none), then its group
 *   meta JSON (field m), createdAt, workflowId   (create only, else '')
 *   KEYS index of the run's hash
 *   n, then n pairs: step name, step record JSON (fields s:<name>)
 *   m, then m pairs: KEYS index of the command's stream, command bytes (field d)
 *   event bytes ('' for none)
 *   s, then s pairs: timer id, due time (ms)       scheduled (added or moved)
 *   c, then c timer ids                             cancelled
 * returns    one reply per transition, in order:
 *            { 1, version }    written (create: created at version 1)
 *            { 0, version }    not written: create found the run (its version), or commit's
 *                              expected revision is not the stored one (the stored version)
 *            { -1 }            commit of an unknown run (nothing written)
 *            error 'ERR multiagents commit: bad <what>' for malformed arguments, or keys that are
 *            not all the runs' own in the partition (nothing written, for any transition)
 * ```
 *
 * Writes of one transition: HSET of the header, the changed step records, version, revision and
 * state (meta and createdAt at create only); XADD of each command and of the event; ZREM / ZADD of
 * the timers; the run moves between state indexes only when its state changed (create adds it to
 * `all`, its state and its workflow); PEXPIRE when it becomes terminal, PERSIST when an operator
 * reopens a terminal run; XACK of the result. The ack is not guarded by owner and delivery count
 * like the bus's acks: this write is the result's whole effect, so whoever holds the entry now may
 * drop it (a redelivered copy is then a duplicate the engine ignores).
 */
export const COMMIT_SCRIPT = `#!lua
local TERMINAL = { ${terminal} }
local base, timers, events, results = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function bad(what)
  return redis.error_reply('ERR multiagents commit: bad ' .. what)
end
local partitions, maxlen, t = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local partition = tonumber(string.match(base or '', '{p(%d+)}:$') or '')
if not partitions or partitions < 1 or not partition then return bad('partition') end
if not tonumber(maxlen) then return bad('maxlen') end
if not t or t < 1 or t ~= math.floor(t) then return bad('transition count') end
if timers ~= base .. 'timers' or events ~= base .. 'x:events' or results ~= base .. 'x:results' then
  return bad("keys: not all in the run's partition")
end
local RUN, COMMANDS = base .. 'run:', base .. 'x:commands.'
for k = ${COMMIT_FIRST_OWN_KEY}, #KEYS do
  if string.sub(KEYS[k], 1, #RUN) ~= RUN and string.sub(KEYS[k], 1, #COMMANDS) ~= COMMANDS then
    return bad("keys: not all in the run's partition")
  end
end
-- hash(txId) mod P must be this partition: the same FNV-1a as RedisKeys.partitionOf. With one
-- partition every txId hashes to 0 and the hash (a tenth of a transition's time) is skipped.
local function inPartition(txId)
  if partitions == 1 then return partition == 0 end
  local hash = bit.tobit(0x811c9dc5)
  for c = 1, #txId do
    hash = bit.bxor(hash, string.byte(txId, c))
    hash = bit.tobit(bit.lshift(hash, 24) + hash * 403)
  end
  if hash < 0 then hash = hash + 4294967296 end
  return hash % partitions == partition
end
local function keyIndex(value)
  local k = tonumber(value)
  if not k or k < ${COMMIT_FIRST_OWN_KEY} or k > #KEYS or k ~= math.floor(k) then return nil end
  return k
end

-- Validate every transition before anything is written.
local i = ${COMMIT_HEAD_ARGS + 1}
local function count()
  local n = tonumber(ARGV[i])
  if not n or n < 0 or n ~= math.floor(n) then return nil end
  i = i + 1
  return n
end
local list = {}
for j = 1, t do
  if i + 12 > #ARGV then return bad('transition') end
  local tr = {
    mode = ARGV[i], txId = ARGV[i + 1], expected = ARGV[i + 2], revision = ARGV[i + 3],
    state = ARGV[i + 4], ttl = ARGV[i + 6], ackId = ARGV[i + 7], ackGroup = ARGV[i + 8],
    meta = ARGV[i + 9], createdAt = ARGV[i + 10], workflowId = ARGV[i + 11],
  }
  local header, runKey = ARGV[i + 5], keyIndex(ARGV[i + 12])
  i = i + 13
  if tr.mode ~= 'create' and tr.mode ~= 'commit' then return bad('mode') end
  if tr.txId == '' or tr.revision == '' then return bad('txId or revision') end
  if tr.state == '' or header == '' then return bad('state or header') end
  if tr.ttl ~= '' and not tonumber(tr.ttl) then return bad('ttl') end
  if tr.ackId ~= '' and (not string.match(tr.ackId, '^%d+%-%d+$') or tr.ackGroup == '') then return bad('ack') end
  if tr.mode == 'create' and (tr.meta == '' or not tonumber(tr.createdAt) or tr.workflowId == '') then
    return bad('create fields')
  end
  if not runKey or KEYS[runKey] ~= RUN .. tr.txId then return bad("keys: not all in the run's partition") end
  if not inPartition(tr.txId) then return bad("partition: the run's txId belongs to another one") end
  tr.run = KEYS[runKey]
  tr.fields = { 'h', header, 'st', tr.state, 'r', tr.revision }
  local n = count()
  if not n or i + 2 * n - 1 > #ARGV then return bad('steps') end
  for _ = 1, n do
    if ARGV[i] == '' then return bad('step name') end
    tr.fields[#tr.fields + 1] = 's:' .. ARGV[i]
    tr.fields[#tr.fields + 1] = ARGV[i + 1]
    i = i + 2
  end
  tr.commands = {}
  n = count()
  if not n or i + 2 * n - 1 > #ARGV then return bad('commands') end
  for c = 1, n do
    local k = keyIndex(ARGV[i])
    if not k then return bad('command stream') end
    if string.sub(KEYS[k], 1, #COMMANDS) ~= COMMANDS then return bad('command stream key') end
    tr.commands[c] = { KEYS[k], ARGV[i + 1] }
    i = i + 2
  end
  tr.event = ARGV[i]
  if tr.event == nil then return bad('event') end
  i = i + 1
  tr.schedule = {}
  n = count()
  if not n or i + 2 * n - 1 > #ARGV then return bad('schedule') end
  for _ = 1, n do
    local due = tonumber(ARGV[i + 1])
    if ARGV[i] == '' or not due or due ~= due then return bad('timer') end
    tr.schedule[#tr.schedule + 1] = ARGV[i + 1]
    tr.schedule[#tr.schedule + 1] = ARGV[i]
    i = i + 2
  end
  tr.cancel = {}
  n = count()
  if not n or i + n - 1 > #ARGV then return bad('cancel') end
  for c = 1, n do
    tr.cancel[c] = ARGV[i]
    i = i + 1
  end
  list[j] = tr
end
if i ~= #ARGV + 1 then return bad('arguments: more than the transitions take') end

-- One transition: its reads, then its writes.
local function apply(tr)
  local run, txId, state, fields = tr.run, tr.txId, tr.state, tr.fields
  local version, previous, created
  if tr.mode == 'create' then
    if redis.call('EXISTS', run) == 1 then
      return { 0, tonumber(redis.call('HGET', run, 'v')) }
    end
    version = 1
    created = tr.createdAt
    fields[#fields + 1] = 'm'
    fields[#fields + 1] = tr.meta
    fields[#fields + 1] = 'c'
    fields[#fields + 1] = created
  else
    local current = redis.call('HMGET', run, 'r', 'st', 'v', 'c')
    if not current[1] then return { -1 } end
    if current[1] ~= tr.expected then return { 0, tonumber(current[3]) } end
    previous = current[2]
    version = tonumber(current[3]) + 1
    created = current[4]
  end
  fields[#fields + 1] = 'v'
  fields[#fields + 1] = version

  redis.call('HSET', run, unpack(fields))
  if tr.mode == 'create' then
    redis.call('ZADD', base .. 'all', created, txId)
    redis.call('ZADD', base .. 'st:' .. state, created, txId)
    redis.call('ZADD', base .. 'wf:' .. tr.workflowId, created, txId)
  elseif previous ~= state then
    redis.call('ZREM', base .. 'st:' .. previous, txId)
    redis.call('ZADD', base .. 'st:' .. state, created, txId)
  end
  if tr.ttl ~= '' then
    if tr.mode == 'create' or previous ~= state then redis.call('PEXPIRE', run, tr.ttl) end
  elseif previous and TERMINAL[previous] and not TERMINAL[state] then
    redis.call('PERSIST', run)
  end
  for _, command in ipairs(tr.commands) do
    redis.call('XADD', command[1], '*', 'd', command[2])
  end
  if tr.event ~= '' then
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'd', tr.event)
  end
  if #tr.cancel > 0 then redis.call('ZREM', timers, unpack(tr.cancel)) end
  if #tr.schedule > 0 then redis.call('ZADD', timers, unpack(tr.schedule)) end
  if tr.ackId ~= '' then redis.call('XACK', results, tr.ackGroup, tr.ackId) end
  return { 1, version }
end

local replies = {}
for j, tr in ipairs(list) do replies[j] = apply(tr) end
return replies
`;
