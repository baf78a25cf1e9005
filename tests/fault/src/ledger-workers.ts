/**
 * The order saga's workers for fault tests, as a worker module the worker-manager service loads
 * (MULTIAGENTS_WORKER_MODULES). Each effect is recorded in a ledger on a separate Redis
 * (LEDGER_REDIS_URL), keyed by the idempotency key: applied once however often a command is
 * delivered, so the checker can prove SPEC §9 invariant 2 across crashes of any process.
 */
import { NonRetryableError } from '@multiagents/contracts';
import { defineWorker, type WorkerContext } from '@multiagents/worker-sdk';
import Redis from 'ioredis';
import { LedgerKeys } from './ledger-workers-keys';

interface OrderInput {
  readonly orderId: string;
  readonly total: number;
  readonly failShipping?: boolean;
}

const ledger = new Redis(process.env['LEDGER_REDIS_URL'] ?? 'redis://127.0.0.1:1', { lazyConnect: false });
const workMs = Number(process.env['FAULT_WORK_MS'] ?? '5');
/** This replica's name in the ledger's callers lists. */
const replica = process.env['FAULT_REPLICA'] ?? 'unnamed';
/**
 * A fault's victim holds its first N commands (effect applied, no result) until the test releases
 * them or the process dies, so a kill or a pause always lands while it holds commands. Without
 * this, whether the victim held anything at the fault depended on the machine's speed.
 */
const holdCommands = Number(process.env['FAULT_HOLD_COMMANDS'] ?? '0');
/** Bound of a hold, so no loop outlives a test that forgot to release it. */
const MAX_HOLD_MS = 120_000;

// Atomically: count the call and its caller; apply (append to the order) only the first time this
// key is seen.
const APPLY_ONCE = `
redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[4], ARGV[3])
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('RPUSH', KEYS[3], ARGV[1])
  return 1
end
return 0`;

async function apply(ctx: WorkerContext): Promise<void> {
  await ledger.eval(
    APPLY_ONCE,
    4,
    LedgerKeys.applied(ctx.idempotencyKey),
    LedgerKeys.calls(ctx.idempotencyKey),
    LedgerKeys.order,
    LedgerKeys.callers(ctx.idempotencyKey),
    ctx.idempotencyKey,
    String(Date.now()),
    replica,
  );
  await holdIfAsked(ctx);
  // Work goes on a little after the effect, so a crash often lands between the effect and the
  // result: the command is delivered again and the ledger shows the second call.
  if (workMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * workMs));
}

/** Holds this command (the worker-manager keeps extending its delivery) while the test says so. */
async function holdIfAsked(ctx: WorkerContext): Promise<void> {
  if (holdCommands <= 0) return;
  // A held command delivered to this replica again is held again: on a loaded machine its extends
  // can lag past the visibility timeout, and its own reclaim then hands it back to it. Answering
  // that second delivery would finish the command before the fault, on the victim.
  const again = (await ledger.sismember(LedgerKeys.held, ctx.idempotencyKey)) === 1;
  if (!again) {
    if ((await ledger.incr(LedgerKeys.holdCount)) > holdCommands) return;
    await ledger.sadd(LedgerKeys.held, ctx.idempotencyKey);
  }
  const deadline = Date.now() + MAX_HOLD_MS;
  while (Date.now() < deadline && (await ledger.exists(LedgerKeys.release)) === 0) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The five order workers, recording into the ledger. */
export const workers = [
  defineWorker<OrderInput, { reservationId: string }>('inventory.reserve', async (input, ctx) => {
    await apply(ctx);
    return { reservationId: `res-${input.orderId}` };
  }),
  defineWorker<OrderInput, { released: boolean }>('inventory.release', async (_input, ctx) => {
    await apply(ctx);
    return { released: true };
  }),
  defineWorker<OrderInput, { paymentId: string; amount: number }>('payment.charge', async (input, ctx) => {
    await apply(ctx);
    return { paymentId: `pay-${input.orderId}`, amount: input.total };
  }),
  defineWorker<OrderInput, { refunded: boolean }>('payment.refund', async (_input, ctx) => {
    await apply(ctx);
    return { refunded: true };
  }),
  defineWorker<OrderInput, { trackingId: string }>('shipping.ship', async (input, ctx) => {
    if (input.failShipping)
      throw new NonRetryableError(`carrier refused ${input.orderId}`, { code: 'CARRIER_REFUSED' });
    await apply(ctx);
    return { trackingId: `trk-${input.orderId}` };
  }),
];
