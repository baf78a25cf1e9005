import { EventType, type Envelope } from '@multiagents/contracts';
import type { RedisDelivery } from './redis-delivery';

interface Registered {
  delivery: RedisDelivery | undefined;
  count: number;
}

/** The command a `step.result` answers: `payload.commandId`, when it is a string. */
export function commandIdOf(envelope: Envelope): string | undefined {
  const payload = envelope.payload;
  if (typeof payload !== 'object' || payload === null) return undefined;
  const id = (payload as { commandId?: unknown }).commandId;
  return typeof id === 'string' && id.length > 0 ? id : undefined;
}

/**
 * The `step.command` deliveries this process is handling, by command id, so that the bus can
 * acknowledge a command in the same round trip as the `step.result` that answers it. A command
 * id held by two deliveries at once (the same command sent again while the first copy still
 * runs here) is ambiguous: neither is matched, each is acknowledged by its own handler.
 */
export class ReplyRegistry {
  private readonly byCommand = new Map<string, Registered>();

  /** Remembers a command delivery while its handler runs. */
  register(delivery: RedisDelivery): void {
    if (delivery.envelope.type !== EventType.StepCommand) return;
    const id = commandIdOf(delivery.envelope);
    if (id === undefined) return;
    const known = this.byCommand.get(id);
    if (known === undefined) this.byCommand.set(id, { delivery, count: 1 });
    else {
      known.count += 1;
      known.delivery = undefined;
    }
  }

  /** Forgets a delivery once its handler settled. */
  unregister(delivery: RedisDelivery): void {
    if (delivery.envelope.type !== EventType.StepCommand) return;
    const id = commandIdOf(delivery.envelope);
    if (id === undefined) return;
    const known = this.byCommand.get(id);
    if (known === undefined) return;
    known.count -= 1;
    if (known.count <= 0) this.byCommand.delete(id);
  }

  /** The one unsettled command delivery a `step.result` envelope answers, if any. */
  answeredBy(result: Envelope): RedisDelivery | undefined {
    if (result.type !== EventType.StepResult) return undefined;
    const id = commandIdOf(result);
    if (id === undefined) return undefined;
    const known = this.byCommand.get(id);
    const delivery = known?.delivery;
    if (delivery === undefined || delivery.settled || delivery.envelope.txId !== result.txId)
      return undefined;
    return delivery;
  }
}
