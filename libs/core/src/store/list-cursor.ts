import { ValidationError } from '@multiagents/contracts';

/**
 * An opaque `RunStore.list` cursor: where the last run of a page sorts (its creation time, then
 * a key the store orders by: the txId, or a token of it).
 */
export function encodeListCursor(createdAt: number, key: string): string {
  return Buffer.from(JSON.stringify([createdAt, key]), 'utf8').toString('base64url');
}

/** Throws ValidationError (INVALID_ARGUMENT) for anything {@link encodeListCursor} did not produce. */
export function decodeListCursor(cursor: string): { createdAt: number; key: string } {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'number' &&
      Number.isFinite(parsed[0]) &&
      typeof parsed[1] === 'string'
    ) {
      return { createdAt: parsed[0], key: parsed[1] };
    }
  } catch {
    // Reported below with the same error as a well-formed JSON of the wrong shape.
  }
  throw new ValidationError('cursor', ['not a cursor returned by list()']);
}
