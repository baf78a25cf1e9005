import { createHash, randomUUID } from 'node:crypto';

/** Where new ids come from (transaction ids, consumer names). Injected for deterministic tests. */
export interface IdGenerator {
  next(): string;
}

/** Random UUIDs (v4). */
export const uuidGenerator: IdGenerator = { next: () => randomUUID() };

/**
 * The txId of the run an idempotency key starts: a UUID-shaped SHA-256 digest of the key, so the
 * same key always names the same run (a second start finds it and starts nothing) and a store
 * needs no separate idempotency record. The key itself (which may hold personal data) is not
 * recoverable from it.
 */
export function txIdForIdempotencyKey(idempotencyKey: string): string {
  const hex = createHash('sha256').update(`multiagents:idempotency:${idempotencyKey}`).digest('hex');
  // RFC 9562 layout: version 8 (custom), variant 10.
  const variant = ((parseInt(hex.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
