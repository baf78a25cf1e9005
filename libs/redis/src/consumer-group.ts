import type { RedisClient } from './redis-backend-options';

/**
 * Creates consumer group `group` on `streamKey` (and the stream, MKSTREAM) starting after
 * `startId` (`0`: everything the stream holds, `$`: only what comes next). A group that exists
 * already is left as it is: `startFrom` only matters when the group is created.
 */
export async function createConsumerGroup(
  connection: RedisClient,
  streamKey: string,
  group: string,
  startId: '0' | '$',
): Promise<void> {
  try {
    await connection.xgroup('CREATE', streamKey, group, startId, 'MKSTREAM');
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('BUSYGROUP')) return;
    throw err;
  }
}

/** Redis' reply when a stream or its consumer group does not exist. */
export function isNoGroupError(err: unknown): boolean {
  // Inside a script Redis prefixes or suffixes the message with script details: search, not match.
  return err instanceof Error && err.message.includes('NOGROUP');
}
