import { ValidationError } from '@multiagents/contracts';

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
  return Buffer.from(JSON.stringify([key.createdAt, key.txId]), 'utf8').toString('base64url');
}

/** Throws ValidationError (INVALID_ARGUMENT) for anything {@link encodeRunCursor} did not produce. */
export function decodeRunCursor(cursor: string): RunIndexKey {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'number' &&
      Number.isFinite(parsed[0]) &&
      typeof parsed[1] === 'string'
    ) {
      return { createdAt: parsed[0], txId: parsed[1] };
    }
  } catch {
    // Reported below with the same error as a well-formed JSON of the wrong shape.
  }
  throw new ValidationError('cursor', ['not a cursor returned by list()']);
}
