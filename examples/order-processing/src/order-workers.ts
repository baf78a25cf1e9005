import { NonRetryableError } from '@multiagents/contracts';
import { defineWorker, type WorkerDefinition } from '@multiagents/worker-sdk';

/** The input of one order. `failShipping` makes ship_order fail (the benchmark's injected failure). */
export interface OrderInput {
  readonly orderId: string;
  readonly total: number;
  readonly failShipping?: boolean;
}

/**
 * How often each effect was applied and undone, by idempotency key, and in which order: what the
 * checks read. A checked run's keys can be forgotten, so a long benchmark's ledger stays small.
 */
export class EffectsLedger {
  private readonly entries = new Map<string, { count: number; readonly seq: number }>();
  private seq = 0;

  /** Records a call; true the first time the key is seen (the effect is applied once). */
  apply(key: string): boolean {
    const entry = this.entries.get(key);
    if (entry) {
      entry.count += 1;
      return false;
    }
    this.entries.set(key, { count: 1, seq: ++this.seq });
    return true;
  }

  /** Calls recorded for the key (0: never applied). */
  count(key: string): number {
    return this.entries.get(key)?.count ?? 0;
  }

  /** When the key's effect was first applied, as a position in the ledger (undefined: never). */
  position(key: string): number | undefined {
    return this.entries.get(key)?.seq;
  }

  /** Keys recorded (and not forgotten). */
  get size(): number {
    return this.entries.size;
  }

  /** Every key's call count. */
  counts(): number[] {
    return [...this.entries.values()].map((e) => e.count);
  }

  /** Drops keys whose runs were checked. */
  forget(keys: Iterable<string>): void {
    for (const key of keys) this.entries.delete(key);
  }
}

/**
 * The five workers of the order saga. They do no I/O: each returns a small object derived from
 * its input, and records its effect in the ledger by idempotency key when given one (without one
 * nothing is kept: a long-running service must not grow by a key per step).
 */
export function createOrderWorkers(ledger?: EffectsLedger): WorkerDefinition<never, unknown>[] {
  return [
    defineWorker<OrderInput, { reservationId: string }>('inventory.reserve', (input, ctx) => {
      ledger?.apply(ctx.idempotencyKey);
      return { reservationId: `res-${input.orderId}` };
    }),
    defineWorker<OrderInput, { released: boolean }>('inventory.release', (_input, ctx) => {
      ledger?.apply(ctx.idempotencyKey);
      return { released: true };
    }),
    defineWorker<OrderInput, { paymentId: string; amount: number }>('payment.charge', (input, ctx) => {
      ledger?.apply(ctx.idempotencyKey);
      return { paymentId: `pay-${input.orderId}`, amount: input.total };
    }),
    defineWorker<OrderInput, { refunded: boolean }>('payment.refund', (_input, ctx) => {
      ledger?.apply(ctx.idempotencyKey);
      return { refunded: true };
    }),
    defineWorker<OrderInput, { trackingId: string }>('shipping.ship', (input, ctx) => {
      if (input.failShipping)
        throw new NonRetryableError(`carrier refused order ${input.orderId}`, { code: 'CARRIER_REFUSED' });
      ledger?.apply(ctx.idempotencyKey);
      return { trackingId: `trk-${input.orderId}` };
    }),
  ];
}

/** A small seeded generator (mulberry32): the same seed picks the same failing orders. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Orders by index: an array, or {@link makeOrderBook}'s list made on demand. */
export interface OrderList {
  readonly length: number;
  at(index: number): OrderInput | undefined;
}

/**
 * The orders {@link makeOrders} lists, made on demand from their index: one byte per order is
 * kept (whether it fails), so a long benchmark holds no list of orders that grows with N. Order
 * ids are `<idPrefix>-<i + 1>` (another prefix makes another set of orders: a warm-up's).
 */
export function makeOrderBook(n: number, failRate: number, seed = 42, idPrefix = 'o'): OrderList {
  const random = seededRandom(seed);
  const fails = new Uint8Array(n);
  for (let i = 0; i < n; i++) fails[i] = random() < failRate ? 1 : 0;
  return {
    length: n,
    at: (i) =>
      Number.isInteger(i) && i >= 0 && i < n
        ? {
            orderId: `${idPrefix}-${i + 1}`,
            total: 10 + (i % 90),
            ...(fails[i] === 1 ? { failShipping: true } : {}),
          }
        : undefined,
  };
}

/** `n` orders; a fraction `failRate` of them (chosen by the seeded generator) fail at shipping. */
export function makeOrders(n: number, failRate: number, seed = 42): OrderInput[] {
  const book = makeOrderBook(n, failRate, seed);
  return Array.from({ length: n }, (_, i) => book.at(i) as OrderInput);
}
