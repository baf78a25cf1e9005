import { ErrorCode } from '@multiagents/contracts';
import { NatsDefinitionStore } from './nats-definition-store';
import { NatsStateStore } from './nats-state-store';
import { DEFAULT_NATS_STORE_OPTIONS, resolveNatsStoreOptions } from './nats-store-options';
import { NatsTimerStore } from './nats-timer-store';

describe('NATS store options', () => {
  it('applies the defaults', () => {
    const problems: string[] = [];
    expect(
      resolveNatsStoreOptions({ servers: 'nats://a:4222, nats://b:4222' }, ['servers'], problems),
    ).toEqual({
      ...DEFAULT_NATS_STORE_OPTIONS,
      servers: ['nats://a:4222', 'nats://b:4222'],
      connection: undefined,
    });
    expect(problems).toEqual([]);
  });

  it('lists every problem at once, without connecting', () => {
    let thrown: unknown;
    try {
      new NatsStateStore({
        prefix: 'has.dot',
        replicas: 2.5,
        requestTimeoutMs: 0,
        terminalRunTtlMs: -1,
        listWindowMs: 1.5,
        servrs: 'x',
      } as never);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: ErrorCode.InvalidArgument });
    expect((thrown as { problems: string[] }).problems).toEqual([
      'unknown option "servrs"',
      'one of servers or connection is required',
      'prefix must be 1-64 letters, digits, "_" or "-" (got "has.dot")',
      'replicas must be an integer from 1 to 5 (got 2.5)',
      'requestTimeoutMs must be a positive integer (got 0)',
      'listWindowMs must be a positive integer (got 1.5)',
      'terminalRunTtlMs must be a positive integer (got -1)',
    ]);
  });

  it('refuses servers and connection together, and empty server lists', () => {
    expect(() => new NatsTimerStore({ servers: [], slotMs: 0 })).toThrow(
      /servers must be a URL or a non-empty list of URLs.*slotMs must be a positive integer/,
    );
    expect(() => new NatsDefinitionStore({ servers: 'nats://x', connection: {} as never })).toThrow(
      'give servers or connection, not both',
    );
  });
});
