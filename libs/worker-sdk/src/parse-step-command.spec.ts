import { ErrorCode, PoisonMessageError, type Envelope } from '@multiagents/contracts';
import { parseStepCommand } from './parse-step-command';
import { commandEnvelope } from './test-support';

function poisonOf(envelope: unknown): PoisonMessageError {
  try {
    parseStepCommand(envelope as Envelope);
  } catch (err) {
    expect(err).toBeInstanceOf(PoisonMessageError);
    return err as PoisonMessageError;
  }
  throw new Error('expected a PoisonMessageError');
}

describe('parseStepCommand', () => {
  it('returns the checked command', () => {
    const envelope = commandEnvelope({}, { timeoutMs: 500, heartbeatTimeoutMs: 100, compensation: true });
    expect(parseStepCommand(envelope)).toEqual({
      id: envelope.id,
      txId: 'tx-1',
      workflowId: 'order_processing',
      step: 'reserve',
      attempt: 1,
      headers: envelope.headers,
      payload: {
        commandId: 'tx-1:reserve:1',
        worker: 'inventory.reserve',
        input: { sku: 'A-1', quantity: 2 },
        idempotencyKey: 'tx-1:reserve',
        compensation: true,
        timeoutMs: 500,
        heartbeatTimeoutMs: 100,
      },
    });
  });

  it('reads an unset duration (absent, null, or the protobuf default 0) as no duration', () => {
    for (const timeoutMs of [undefined, null, 0]) {
      const parsed = parseStepCommand(commandEnvelope({}, { timeoutMs: timeoutMs as never }));
      expect(parsed.payload).not.toHaveProperty('timeoutMs');
    }
  });

  it.each([undefined, null, 'text', 42, [1, 2], { nested: true }])('accepts any input (%j)', (input) => {
    expect(parseStepCommand(commandEnvelope({}, { input })).payload.input).toEqual(input);
  });

  it.each<[string, unknown]>([
    ['a null payload', commandEnvelope({ payload: null })],
    ['a string payload', commandEnvelope({ payload: 'step' })],
    ['a numeric commandId', commandEnvelope({}, { commandId: 7 as never })],
    ['an empty commandId', commandEnvelope({}, { commandId: '' })],
    ['a missing worker', commandEnvelope({}, { worker: undefined as never })],
    ['a missing idempotencyKey', commandEnvelope({}, { idempotencyKey: undefined as never })],
    ['a string compensation', commandEnvelope({}, { compensation: 'yes' as never })],
    ['a string timeoutMs', commandEnvelope({}, { timeoutMs: '5' as never })],
    ['a negative heartbeatTimeoutMs', commandEnvelope({}, { heartbeatTimeoutMs: -1 })],
    ['a non-finite timeoutMs', commandEnvelope({}, { timeoutMs: Number.POSITIVE_INFINITY })],
    ['another type', commandEnvelope({ type: 'step.result' })],
    ['an empty txId', commandEnvelope({ txId: '' })],
    ['a missing step', commandEnvelope({ step: undefined })],
    ['a fractional attempt', commandEnvelope({ attempt: 1.5 })],
    ['a missing attempt', commandEnvelope({ attempt: undefined })],
    ['a non-string header', commandEnvelope({ headers: { traceparent: 5 } as never })],
  ])('dead-letters a command with %s', (_label, envelope) => {
    const error = poisonOf(envelope);
    expect(error.code).toBe(ErrorCode.PoisonMessage);
    expect(error.retryable).toBe(false);
    expect((error.details?.problems as string[]).length).toBe(1);
  });

  it('lists every problem of a command', () => {
    const error = poisonOf(
      commandEnvelope({ attempt: -1 }, { commandId: 1 as never, compensation: 0 as never }),
    );
    expect(error.details?.problems).toEqual([
      'attempt must be a non-negative integer (got -1)',
      'payload.commandId must be a non-empty string (got 1)',
      'payload.compensation must be a boolean (got 0)',
    ]);
    expect(error.message).toContain('payload.commandId');
  });
});
