import { ErrorCode, ValidationError } from '@multiagents/contracts';
import { connect } from '@nats-io/transport-node';
import { DEFAULT_NATS_BUS_OPTIONS, resolveNatsEventBusOptions } from './nats-event-bus-options';
import { NatsEventBus } from './nats-event-bus';

describe('resolveNatsEventBusOptions', () => {
  it('applies the defaults', () => {
    const resolved = resolveNatsEventBusOptions({ servers: 'nats://127.0.0.1:4222' });
    expect(resolved).toMatchObject({ ...DEFAULT_NATS_BUS_OPTIONS, servers: ['nats://127.0.0.1:4222'] });
    expect(resolved.connection).toBeUndefined();
  });

  it('accepts a list of servers', () => {
    const servers = ['nats://a:4222', 'nats://b:4222'];
    expect(resolveNatsEventBusOptions({ servers }).servers).toEqual(servers);
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      resolveNatsEventBusOptions({
        prefix: 'bad.prefix',
        streamReplicas: 0,
        storage: 'disk' as 'file',
        maxAgeMs: -1,
        maxBytes: 0,
        maxMsgs: 1.5,
        duplicateWindowMs: 0,
        deadLetterMaxAgeMs: -5,
        maxAckPending: 0,
        fetchExpiresMs: 999,
        maxFetchBatch: 0,
        maxPublishInFlight: 0,
        publishRetries: 0,
        requestTimeoutMs: 0,
        connectTimeoutMs: 0,
        reconnectTimeWaitMs: -1,
        codec: { maxBytes: 0 },
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).code).toBe(ErrorCode.InvalidArgument);
    expect((error as ValidationError).problems).toEqual([
      'servers or connection is required',
      'prefix must match ^[A-Za-z0-9_-]{1,64}$',
      'streamReplicas must be an integer from 1 to 5',
      "storage must be 'file' or 'memory'",
      'maxAgeMs must be an integer >= 0 (0: no age limit)',
      'maxBytes must be -1 (no limit) or an integer >= 1',
      'maxMsgs must be -1 (no limit) or an integer >= 1',
      'duplicateWindowMs must be an integer >= 1',
      'deadLetterMaxAgeMs must be an integer >= 0 (0: never)',
      'maxAckPending must be -1 (no limit) or an integer >= 1',
      'fetchExpiresMs must be an integer >= 1000',
      'maxFetchBatch must be an integer >= 1',
      'maxPublishInFlight must be an integer >= 1',
      'publishRetries must be an integer >= 1',
      'requestTimeoutMs must be an integer >= 1',
      'connectTimeoutMs must be an integer >= 1',
      'reconnectTimeWaitMs must be an integer >= 0',
      'codec.maxBytes must be an integer >= 1',
    ]);
  });

  it('refuses a duplicate window longer than the max age, and servers together with a connection', async () => {
    expect(() =>
      resolveNatsEventBusOptions({ servers: 'nats://x:1', maxAgeMs: 1_000, duplicateWindowMs: 2_000 }),
    ).toThrow('duplicateWindowMs must not exceed maxAgeMs');
    // A connection object is only stored, never used, by option resolution: no server needed.
    const connection = {} as Awaited<ReturnType<typeof connect>>;
    expect(() => resolveNatsEventBusOptions({ servers: 'nats://x:1', connection })).toThrow(
      'give servers or connection, not both',
    );
    expect(() => resolveNatsEventBusOptions({ servers: [''] })).toThrow('servers must be non-empty strings');
  });

  it('validates in the NatsEventBus constructor, before any connection is made', () => {
    expect(() => new NatsEventBus({ servers: 'nats://127.0.0.1:1', prefix: 'a.b' })).toThrow(ValidationError);
  });
});
