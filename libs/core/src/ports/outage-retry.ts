import { MultiAgentsError } from '@multiagents/contracts';

/**
 * Deliveries of a message whose handler keeps failing for a reason outside the message (its store
 * unreachable: a broker restarting, a leader election) before it is dead-lettered. With
 * {@link retryAfterOutage}'s delays that waits out an outage of about 25 minutes.
 */
export const OUTAGE_MAX_DELIVERIES = 60;

/** The longest delay {@link retryAfterOutage} asks for. */
const MAX_OUTAGE_RETRY_DELAY_MS = 30_000;

/**
 * What a consumer whose handler writes to a store throws on failure, so the bus waits an outage
 * out rather than spend the message's deliveries on it. A non-retryable {@link MultiAgentsError}
 * (the message itself is wrong; a poison message is dead-lettered at once) is thrown as it is;
 * anything else gets a retry delay of `baseDelayMs` doubled with each delivery, up to 30 s.
 *
 * @example
 * await bus.subscribe(topic, { group, consumer, maxDeliveries: OUTAGE_MAX_DELIVERIES }, async (d) => {
 *   try {
 *     await store.append(d.envelope.txId, entryOf(d.envelope));
 *   } catch (err) {
 *     throw retryAfterOutage(err, d.deliveryCount, 250);
 *   }
 * });
 */
export function retryAfterOutage(err: unknown, deliveryCount: number, baseDelayMs: number): unknown {
  if (err instanceof MultiAgentsError && !err.retryable) return err;
  const retryAfterMs = Math.min(MAX_OUTAGE_RETRY_DELAY_MS, baseDelayMs * 2 ** Math.min(deliveryCount, 10));
  return Object.assign(err instanceof Error ? err : new Error(String(err)), { retryAfterMs });
}
