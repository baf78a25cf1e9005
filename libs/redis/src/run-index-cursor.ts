import { decodeListCursor, encodeListCursor } from '@multiagents/core';

/** Where a run sorts in the listing indexes: by createdAt, then txId (the zset score and member). */
export interface RunIndexKey {
  readonly createdAt: number;
  readonly txId: string;
}

/**
 * Newest first: createdAt descending, then txId descending byte by byte — the zsets' own reverse
 * order (Redis orders equal scores by member bytes), so pages merged from several partitions
 * come out in the order one index would give.
 */
export function newerFirst(a: RunIndexKey, b: RunIndexKey): number {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return Buffer.compare(Buffer.from(b.txId, 'utf8'), Buffer.from(a.txId, 'utf8'));
}

/**
 * An opaque list cursor: the key of the last run of a page. The order is total and the same in
 * every partition, so one position is a valid start in each of them.
 */
export function encodeRunCursor(key: RunIndexKey): string {
  return encodeListCursor(key.createdAt, key.txId);
}

/** Throws ValidationError (INVALID_ARGUMENT) for anything {@link encodeRunCursor} did not produce. */
export function decodeRunCursor(cursor: string): RunIndexKey {
  const { createdAt, key } = decodeListCursor(cursor);
  return { createdAt, txId: key };
}
