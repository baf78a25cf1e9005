/**
 * `index-run.lua`: adds a new run to the listing indexes, BEFORE the create script writes it
 * (the indexes are in the global `{runs}` slot, the run in its own: one script cannot do both in
 * Redis Cluster).
 *
 * ```
 * KEYS[1]   <p>:{runs}:all               every run (zset, score createdAt)
 * KEYS[2]   <p>:{runs}:wf:<workflowId>   the run's workflow (zset)
 * KEYS[3]   <p>:{runs}:state:<state>     the run's state (zset)
 * KEYS[4]   <p>:{runs}:meta              txId -> "<version>|<state>|<ms>|<workflowId>" (hash)
 * ARGV[1]   txId
 * ARGV[2]   createdAt, in ms
 * ARGV[3]   meta value at version 0 ("not yet confirmed"): `0|<state>|<now ms>|<workflowId>`
 * returns   1
 * ```
 *
 * Everything is NX: a create that then fails because the txId exists must not move the existing
 * run in the indexes. An entry whose run never appears is dropped by a later list() once its
 * unconfirmed meta is older than the in-flight grace (see drop-run-index.lua).
 */
export const INDEX_RUN_SCRIPT = `
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1])
redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[3])
return 1
`;
