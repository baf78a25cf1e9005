import { createHash, randomFillSync } from 'node:crypto';

/** Where new ids come from (transaction ids, consumer names). Injected for deterministic tests. */
export interface IdGenerator {
  next(): string;
}

/** Random UUIDs (v4). */
export const uuidGenerator: IdGenerator = { next: () => randomUuid() };

const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Random bytes drawn in batches: one call to the system's generator per 256 ids. */
const RANDOM = Buffer.alloc(16 * 256);
let randomOffset = RANDOM.length;
/** The id being written; the dashes stay where they are. */
const UUID = Buffer.alloc(36, '-');

/**
 * A random UUID (v4) as one flat string. `crypto.randomUUID` builds its result by concatenation,
 * a rope of some twenty pieces that V8 keeps as it is until something hashes it: several times the
 * memory of the id, in every run record, map and message that names the run.
 */
export function randomUuid(): string {
  if (randomOffset === RANDOM.length) {
    randomFillSync(RANDOM);
    randomOffset = 0;
  }
  const id = formatUuid(RANDOM, randomOffset, 0x40);
  randomOffset += 16;
  return id;
}

/**
 * The txId of the run an idempotency key starts: a UUID-shaped SHA-256 digest of the key, so the
 * same key always names the same run (a second start finds it and starts nothing) and a store
 * needs no separate idempotency record. The key itself (which may hold personal data) is not
 * recoverable from it.
 */
export function txIdForIdempotencyKey(idempotencyKey: string): string {
  const digest = createHash('sha256').update(`multiagents:idempotency:${idempotencyKey}`).digest();
  // RFC 9562 layout: version 8 (custom).
  return formatUuid(digest, 0, 0x80);
}

/**
 * 16 bytes from `offset` as a UUID with `version` (its high nibble) and variant 10, written into a
 * buffer and read out in one piece: one flat string.
 */
function formatUuid(bytes: Uint8Array, offset: number, version: number): string {
  let at = 0;
  for (let i = 0; i < 16; i += 1) {
    let byte = bytes[offset + i] as number;
    if (i === 6) byte = (byte & 0x0f) | version;
    else if (i === 8) byte = (byte & 0x3f) | 0x80;
    if (at === 8 || at === 13 || at === 18 || at === 23) at += 1;
    UUID[at] = HEX[byte >> 4] as number;
    UUID[at + 1] = HEX[byte & 0x0f] as number;
    at += 2;
  }
  return UUID.toString('latin1');
}
