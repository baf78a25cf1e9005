/**
 * `void-run.lua`: fences off a txId that has no run, so nothing can create a run under it later.
 *
 * ```
 * KEYS[1]   <p>:{<txId>}:run   the run's record (hash)
 * ARGV[1]   how long the fence stays, in ms
 * returns   1 the txId is fenced off (now or already); 0 a run exists under it
 * ```
 *
 * Used when an idempotency key points to a txId whose run never appeared: its creator is presumed
 * crashed. Fencing and creating happen in the run's slot, so exactly one of them wins.
 */
export const VOID_RUN_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HEXISTS', KEYS[1], 'void') == 1 then
    return 1
  end
  return 0
end
redis.call('HSET', KEYS[1], 'void', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`;
