import type { MsgHdrs } from '@nats-io/transport-node';

/**
 * The header of a replayed dead letter in the topic stream: the one group it is for (the group
 * that dead-lettered it, as its dead letter's `Multiagents-Group` header holds it). A published
 * message never has it.
 */
export const REPLAY_GROUP_HEADER = 'Multiagents-Replay-Group';

/**
 * The group a message is for when it is a replayed dead letter: its {@link REPLAY_GROUP_HEADER};
 * `''` when that header is malformed (empty, or given more than once), so it names no group;
 * undefined for a published message. Header values travel trimmed: compare with
 * {@link replayGroupOf} of the group's name.
 */
export function replayTarget(headers: MsgHdrs | undefined): string | undefined {
  if (headers === undefined || !headers.has(REPLAY_GROUP_HEADER)) return undefined;
  const values = headers.values(REPLAY_GROUP_HEADER);
  return values.length === 1 ? values[0] : '';
}

/** A group's name as a header carries it (NATS trims header values). */
export function replayGroupOf(group: string): string {
  return group.trim();
}
