import { ErrorCode, ValidationError } from '@multiagents/contracts';
import type { NatsConnection } from '@nats-io/transport-node';
import { createNatsBackend } from './nats-backend';
import { DEFAULT_NATS_BACKEND_OPTIONS, resolveNatsBackendOptions } from './nats-backend-options';
import { redactServers } from './nats-context';

describe('resolveNatsBackendOptions', () => {
  it('applies the defaults', () => {
    const resolved = resolveNatsBackendOptions({ servers: 'nats://127.0.0.1:4222' });
    expect(resolved).toMatchObject({ ...DEFAULT_NATS_BACKEND_OPTIONS, servers: ['nats://127.0.0.1:4222'] });
    expect(resolved.connection).toBeUndefined();
    expect(resolved.maintenance).toBeUndefined();
  });

  it('takes credentials out of the server URLs: user and password, or a token', () => {
    const withPassword = resolveNatsBackendOptions({
      servers: 'nats://app:p%40ss@a:4222, nats://app:p%40ss@b:4222',
    });
    expect(withPassword.servers).toEqual(['nats://a:4222', 'nats://b:4222']);
    expect(withPassword.auth).toEqual({ user: 'app', pass: 'p@ss' });
    const withToken = resolveNatsBackendOptions({ servers: 'nats://s3cr3t@a:4222' });
    expect(withToken).toMatchObject({ servers: ['nats://a:4222'], auth: { token: 's3cr3t' } });
    expect(resolveNatsBackendOptions({ servers: 'nats://a:4222' }).auth).toBeUndefined();
    expect(() => resolveNatsBackendOptions({ servers: 'nats://u:one@a:1,nats://u:two@b:1' })).toThrow(
      'servers carry different credentials',
    );
  });

  it('accepts a list of servers, or a comma-separated string', () => {
    const servers = ['nats://a:4222', 'nats://b:4222'];
    expect(resolveNatsBackendOptions({ servers }).servers).toEqual(servers);
    expect(resolveNatsBackendOptions({ servers: 'nats://a:4222, nats://b:4222' }).servers).toEqual(servers);
  });

  it('fills in the maintenance defaults only when maintenance is asked for', () => {
    expect(resolveNatsBackendOptions({ servers: 'nats://x:1', maintenance: {} }).maintenance).toEqual({
      intervalMs: 30_000,
      terminalRunTtlMs: undefined,
    });
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      resolveNatsBackendOptions({
        prefix: 'bad.prefix',
        replicas: 0,
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
        listWindowMs: 10,
        outboxGraceMs: 0,
        timerAckWaitMs: 10,
        timerHoldMs: -1,
        timerDeferMs: -1,
        timerPullBatch: 0,
        cachedRuns: -1,
        definitionCacheMs: -1,
        maintenance: { intervalMs: 0, terminalRunTtlMs: 0 },
        codec: { maxBytes: 0 },
        clock: {} as never,
        ...({ servres: 'nats://typo:4222' } as object),
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).code).toBe(ErrorCode.InvalidArgument);
    expect((error as ValidationError).problems).toEqual([
      'unknown option "servres"',
      'servers or connection is required',
      'prefix must match ^[A-Za-z0-9_-]{1,64}$',
      'replicas must be an integer from 1 to 5',
      "storage must be 'file' or 'memory'",
      'duplicateWindowMs must be an integer >= 1',
      'maxAgeMs must be an integer >= 0 (0: no age limit)',
      'maxBytes must be -1 (no limit) or an integer >= 1',
      'maxMsgs must be -1 (no limit) or an integer >= 1',
      'deadLetterMaxAgeMs must be an integer >= 0 (0: never)',
      'maxAckPending must be -1 (no limit) or an integer >= 1',
      'fetchExpiresMs must be an integer >= 1000',
      'maxFetchBatch must be an integer >= 1',
      'maxPublishInFlight must be an integer >= 1',
      'publishRetries must be an integer >= 1',
      'requestTimeoutMs must be an integer >= 1',
      'connectTimeoutMs must be an integer >= 1',
      'reconnectTimeWaitMs must be an integer >= 0',
      'listWindowMs must be an integer >= 1000',
      'outboxGraceMs must be an integer >= 1',
      'timerAckWaitMs must be an integer >= 1000',
      'timerHoldMs must be an integer >= 0',
      'timerDeferMs must be an integer >= 0',
      'timerPullBatch must be an integer >= 1',
      'cachedRuns must be an integer >= 0',
      'definitionCacheMs must be an integer >= 0',
      'maintenance.intervalMs must be an integer >= 1',
      'maintenance.terminalRunTtlMs must be an integer >= 1',
      'codec.maxBytes must be an integer >= 1',
      'clock must have a now() method',
    ]);
  });

  it('checks how options relate to each other, and servers against a connection', () => {
    const problems = (options: Parameters<typeof resolveNatsBackendOptions>[0]): readonly string[] => {
      try {
        resolveNatsBackendOptions(options);
        return [];
      } catch (err) {
        return (err as ValidationError).problems;
      }
    };
    expect(
      problems({ servers: 'nats://x:1', maxAgeMs: 5_000, duplicateWindowMs: 6_000, outboxGraceMs: 1_000 }),
    ).toEqual(['duplicateWindowMs must not exceed maxAgeMs']);
    expect(problems({ servers: 'nats://x:1', outboxGraceMs: 120_000, duplicateWindowMs: 120_000 })).toEqual([
      'outboxGraceMs must be shorter than duplicateWindowMs',
    ]);
    expect(problems({ servers: 'nats://x:1', timerAckWaitMs: 4_000, timerHoldMs: 3_000 })).toEqual([
      'timerHoldMs must be at most half of timerAckWaitMs',
    ]);
    // A connection object is only stored, never used, by option resolution: no server needed.
    const connection = {} as NatsConnection;
    expect(problems({ servers: 'nats://x:1', connection })).toEqual(['give servers or connection, not both']);
    expect(problems({ servers: [''] })).toEqual(['servers must be a URL or a non-empty list of URLs']);
  });

  it('validates in createNatsBackend, before any connection is made', async () => {
    await expect(createNatsBackend({ servers: 'nats://127.0.0.1:1', prefix: 'a.b' })).rejects.toThrow(
      ValidationError,
    );
  });
});

describe('redactServers', () => {
  it('hides passwords and tokens, keeps user names, hosts and ports', () => {
    expect(
      redactServers([
        'nats://app:s3cret@a:4222',
        'nats://averylongtoken@b:4222',
        'tls://c:4443',
        'not a url//x:y@z',
      ]),
    ).toBe('nats://app:***@a:4222, nats://***@b:4222, tls://c:4443, not a url//***@z');
  });
});
