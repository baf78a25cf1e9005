import type { Envelope } from '@multiagents/contracts';
import type { TailHandler } from './event-bus';

/**
 * Hands one message of a live feed ({@link EventBus.tail}) to its handler, as every bus does:
 * bytes that do not decode are counted (`refused`) and skipped, and what the handler throws is
 * reported (`threw`), never raised, so neither stops the feed.
 *
 * @example
 * handToTail(() => decodeEnvelope(data, codec), handler, () => counters.refused++, (err) => log(err));
 */
export function handToTail(
  decode: () => Envelope,
  handler: TailHandler,
  refused: () => void,
  threw: (err: unknown) => void,
): void {
  let envelope: Envelope;
  try {
    envelope = decode();
  } catch {
    refused();
    return;
  }
  try {
    handler(envelope);
  } catch (err) {
    threw(err);
  }
}
