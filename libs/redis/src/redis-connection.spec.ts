import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';
import { Redis, ReplyError } from 'ioredis';
import { RedisConnection, classifyRedisFailure } from './redis-connection';

/** A reply error as ioredis rejects a command with it. */
function reply(message: string): Error {
  return new ReplyError(message) as Error;
}

/** An error of the socket under the connection. */
function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:6379`), { code });
}

describe('RedisConnection error mapping', () => {
  // A client that never connects: mapping an error needs no server.
  const connection = RedisConnection.open({
    connect: () => new Redis({ lazyConnect: true }),
    prefix: 'unit',
  });
  afterAll(() => connection.close());

  it.each([
    ['a demoted master (failover)', reply("READONLY You can't write against a read only replica.")],
    [
      'a script whose write a demoted master refused (Redis 6 wraps the code)',
      reply(
        'ERR Error running script (call to f_0123): @user_script:3: @user_script: 3: ' +
          "-READONLY You can't write against a read only replica. ",
      ),
    ],
    [
      'a replica that lost its master',
      reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    ],
    ['a restart loading its data', reply('LOADING Redis is loading the dataset in memory')],
    ['cluster slots not all served', reply('CLUSTERDOWN The cluster is down')],
    ['a slot being migrated', reply('TRYAGAIN Multiple keys request during rehashing of slot')],
    [
      'a long script',
      reply('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.'),
    ],
    ['too few replicas', reply('NOREPLICAS Not enough good replicas to write.')],
    ['a connection closed under the command', new Error('Connection is closed.')],
    ['a reset socket', socketError('ECONNRESET')],
    ['a refused connection', socketError('ECONNREFUSED')],
  ])('maps %s to UNAVAILABLE, retryable', (_what, err) => {
    expect(classifyRedisFailure(err)).toBe('unavailable');
    expect(connection.redisError('start', err)).toMatchObject({
      code: ErrorCode.Unavailable,
      retryable: true,
      message: expect.stringMatching(/^start: Redis is unavailable for now/),
      cause: err,
    });
  });

  it('maps a command Redis did not answer in time to TIMEOUT, retryable', () => {
    const err = new Error('Command timed out');
    expect(connection.redisError('commit', err)).toMatchObject({ code: ErrorCode.Timeout, retryable: true });
  });

  it.each([
    ['out of memory', reply("OOM command not allowed when used memory > 'maxmemory'.")],
    ['a group that exists already', reply('BUSYGROUP Consumer Group name already exists')],
    ['a restore over a key', reply('BUSYKEY Target key name already exists.')],
    ['a key of another type', reply('WRONGTYPE Operation against a key holding the wrong kind of value')],
    ['a group named like a transient code', reply("NOGROUP No such key 'x' or consumer group 'LOADING'")],
    ['a thrown non-error', 'READONLY'],
  ])('keeps %s INTERNAL', (_what, err) => {
    expect(classifyRedisFailure(err)).toBe('failed');
    expect(connection.redisError('commit', err)).toMatchObject({ code: ErrorCode.Internal, retryable: true });
  });

  it.each([
    [
      'a wrong password',
      reply('WRONGPASS invalid username-password pair or user is disabled.'),
      ErrorCode.Unauthenticated,
    ],
    ['no password where one is needed', reply('NOAUTH Authentication required.'), ErrorCode.Unauthenticated],
    [
      'a key outside the ACL',
      reply('NOPERM this user has no permissions to access one of the keys used as arguments'),
      ErrorCode.PermissionDenied,
    ],
  ])(
    'maps %s to a configuration error, not retryable (a service stops at start: exit 78)',
    (_what, err, code) => {
      expect(connection.redisError('start', err)).toMatchObject({ code, retryable: false, cause: err });
    },
  );

  it('passes an error that carries a code through', () => {
    const err = new MultiAgentsError(ErrorCode.FailedPrecondition, 'closed', { retryable: false });
    expect(connection.redisError('commit', err)).toBe(err);
  });
});
