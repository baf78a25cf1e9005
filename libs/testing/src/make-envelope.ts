import { EventType, type Envelope } from '@multiagents/contracts';

let envelopeCounter = 0;

/**
 * A valid {@link Envelope} (a step command by default) with a fresh `id` unless overridden. Every
 * optional field is set so an encode/decode round trip can be compared field by field.
 *
 * @example
 * await bus.publish('commands.charge', [makeEnvelope({ payload: { n: 1 } })]);
 */
export function makeEnvelope(overrides: Partial<Envelope> = {}): Envelope {
  envelopeCounter += 1;
  return {
    id: `env-${process.pid}-${envelopeCounter}-${Math.random().toString(36).slice(2, 8)}`,
    type: EventType.StepCommand,
    txId: `tx-${envelopeCounter}`,
    workflowId: 'wf-test',
    step: 'charge',
    attempt: 1,
    time: 1_700_000_000_000 + envelopeCounter,
    headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    payload: { n: envelopeCounter },
    ...overrides,
  };
}
