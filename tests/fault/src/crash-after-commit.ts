/**
 * A fault injector preloaded into an orchestrator process (`node -r <this file> main.js`): it
 * counts the run store's commits and kills the process with SIGKILL the moment the Nth one
 * (FAULT_CRASH_AFTER_COMMITS) has returned — a crash after the atomic write and before anything
 * else, the read of the next event included. Test-only: the product has no such switch.
 */
import { NatsRunStore } from '@multiagents/nats';
import { RedisRunStore } from '@multiagents/redis';

const after = Number(process.env['FAULT_CRASH_AFTER_COMMITS'] ?? '0');
let commits = 0;

type Commit = (this: unknown, ...args: unknown[]) => Promise<unknown>;

function crashAfter(prototype: { commit: Commit }): void {
  const commit = prototype.commit;
  prototype.commit = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
    const result = await commit.apply(this, args);
    if (result !== undefined && ++commits === after) {
      process.stderr.write(`fault injector: SIGKILL right after commit ${commits}\n`);
      process.kill(process.pid, 'SIGKILL');
    }
    return result;
  };
}

if (after > 0) {
  crashAfter(RedisRunStore.prototype as unknown as { commit: Commit });
  crashAfter(NatsRunStore.prototype as unknown as { commit: Commit });
}
