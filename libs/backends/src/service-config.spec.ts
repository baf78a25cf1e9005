import { ValidationError } from '@multiagents/contracts';
import { listVariable, parseServiceConfig } from './service-config';

describe('parseServiceConfig', () => {
  it('defaults to the embedded memory backend', () => {
    expect(parseServiceConfig({}, { grpcPort: 50051 })).toEqual({
      backend: 'memory',
      prefix: 'multiagents',
      grpcPort: 50051,
      logLevel: 'info',
    });
  });

  it('reads every variable', () => {
    const config = parseServiceConfig(
      {
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://127.0.0.1:6380',
        MULTIAGENTS_PREFIX: 'team-a',
        GRPC_PORT: '6000',
        HTTP_PORT: '0',
        LOG_LEVEL: 'debug',
      },
      { grpcPort: 50051 },
    );
    expect(config).toEqual({
      backend: 'redis',
      redisUrl: 'redis://127.0.0.1:6380',
      prefix: 'team-a',
      grpcPort: 6000,
      httpPort: 0,
      logLevel: 'debug',
    });
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      parseServiceConfig(
        {
          MULTIAGENTS_BACKEND: 'redis',
          REDIS_URL: 'http://x',
          MULTIAGENTS_PREFIX: 'a b',
          GRPC_PORT: '70000',
          HTTP_PORT: 'x',
          LOG_LEVEL: 'loud',
        },
        { grpcPort: 1 },
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems;
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toMatch(/REDIS_URL.*protocol/);
    expect(problems.join('\n')).toMatch(/MULTIAGENTS_PREFIX/);
    expect(problems.join('\n')).toMatch(/GRPC_PORT=70000/);
    expect(problems.join('\n')).toMatch(/HTTP_PORT=x/);
    expect(problems.join('\n')).toMatch(/LOG_LEVEL=loud/);
  });

  it('requires the URL of the chosen backend and rejects unknown backends', () => {
    expect(() => parseServiceConfig({ MULTIAGENTS_BACKEND: 'nats' }, { grpcPort: 1 })).toThrow(
      /NATS_URL is required/,
    );
    expect(() => parseServiceConfig({ MULTIAGENTS_BACKEND: 'kafka' }, { grpcPort: 1 })).toThrow(
      /must be one of/,
    );
    expect(() =>
      parseServiceConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'not a url' }, { grpcPort: 1 }),
    ).toThrow(/not a URL/);
  });

  it('reads plaintext at rest only when told to, and refuses a switch that is not a boolean', () => {
    const redis = { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6379' };
    expect(parseServiceConfig(redis, { grpcPort: 1 }).acceptPlaintextAtRest).toBeUndefined();
    expect(
      parseServiceConfig({ ...redis, MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT: 'true' }, { grpcPort: 1 })
        .acceptPlaintextAtRest,
    ).toBe(true);
    expect(() =>
      parseServiceConfig({ ...redis, MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT: 'maybe' }, { grpcPort: 1 }),
    ).toThrow(/MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT=maybe: must be true or false/);
  });

  describe('Redis Cluster and NATS replicas', () => {
    const parse = (env: Record<string, string>) => parseServiceConfig(env, { grpcPort: 1 });
    const problemsOf = (env: Record<string, string>): string[] => {
      try {
        parse(env);
      } catch (err) {
        if (err instanceof ValidationError) return [...err.problems];
        throw err;
      }
      return [];
    };

    it('takes several seed nodes as a Redis Cluster', () => {
      const config = parse({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://127.0.0.1:7000, redis://127.0.0.1:7001,redis://127.0.0.1:7002',
      });
      expect(config.redisCluster).toBe(true);
      expect(config.redisPartitions).toBeUndefined(); // chosen from the masters at start
    });

    it('takes one seed as a cluster when told so, and one server by default', () => {
      const one = { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:7000' };
      expect(parse(one).redisCluster).toBeUndefined();
      expect(parse({ ...one, MULTIAGENTS_REDIS_CLUSTER: 'true' }).redisCluster).toBe(true);
      expect(parse({ ...one, MULTIAGENTS_REDIS_CLUSTER: 'false' }).redisCluster).toBeUndefined();
      expect(
        parse({ ...one, MULTIAGENTS_REDIS_CLUSTER: 'true', MULTIAGENTS_REDIS_PARTITIONS: '6' }),
      ).toMatchObject({ redisCluster: true, redisPartitions: 6 });
    });

    it('refuses several addresses for one server, bad switches, databases and mixed credentials, masking passwords', () => {
      const problems = problemsOf({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://:s3cret@127.0.0.1:7000/2,redis://:other@127.0.0.1:7001',
        MULTIAGENTS_REDIS_CLUSTER: 'no',
      });
      expect(problems).toEqual([
        expect.stringMatching(/REDIS_URL lists 2 addresses but MULTIAGENTS_REDIS_CLUSTER=no/),
      ]);
      const clusterProblems = problemsOf({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://:s3cret@127.0.0.1:7000/2,redis://:other@127.0.0.1:7001',
      });
      expect(clusterProblems).toHaveLength(2);
      expect(clusterProblems.join('\n')).toMatch(/only database 0, not 2/);
      expect(clusterProblems.join('\n')).toMatch(/different credentials/);
      expect(clusterProblems.join('\n')).not.toMatch(/s3cret|other/);
      expect(
        problemsOf({
          MULTIAGENTS_BACKEND: 'redis',
          REDIS_URL: 'redis://x:1',
          MULTIAGENTS_REDIS_CLUSTER: 'maybe',
        }),
      ).toEqual([expect.stringMatching(/MULTIAGENTS_REDIS_CLUSTER=maybe: must be true or false/)]);
      // A bad address never echoes its password.
      expect(
        problemsOf({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'http://u:s3cret@h:1' }).join('\n'),
      ).not.toMatch(/s3cret/);
    });

    it('reads MULTIAGENTS_NATS_REPLICAS from 1 to 5 for the NATS backend', () => {
      const nats = { MULTIAGENTS_BACKEND: 'nats', NATS_URL: 'nats://a:4222,nats://b:4222,nats://c:4222' };
      expect(parse({ ...nats, MULTIAGENTS_NATS_REPLICAS: '3' })).toMatchObject({
        natsUrl: 'nats://a:4222,nats://b:4222,nats://c:4222',
        natsReplicas: 3,
      });
      expect(parse(nats).natsReplicas).toBeUndefined();
      expect(problemsOf({ ...nats, MULTIAGENTS_NATS_REPLICAS: '7' })).toEqual([
        expect.stringMatching(/MULTIAGENTS_NATS_REPLICAS=7: must be an integer from 1 to 5/),
      ]);
      expect(problemsOf({ ...nats, MULTIAGENTS_NATS_REPLICAS: '0' })).toHaveLength(1);
    });
  });

  it('splits list variables', () => {
    expect(listVariable({ X: ' a.js, ,b.js ' }, 'X')).toEqual(['a.js', 'b.js']);
    expect(listVariable({}, 'X')).toEqual([]);
  });

  describe('bus signing (MULTIAGENTS_BUS_SIGNING_KEY, MULTIAGENTS_BUS_VERIFICATION_KEYS)', () => {
    const orch = Buffer.alloc(32, 7).toString('base64');
    const wm = Buffer.alloc(32, 9).toString('base64');

    it('signs with one key and verifies with several, by key id', () => {
      const config = parseServiceConfig(
        {
          MULTIAGENTS_BUS_SIGNING_KEY: `wm-1:${wm}`,
          MULTIAGENTS_BUS_VERIFICATION_KEYS: `orch-2:${orch},orch-1:${orch}`,
        },
        { grpcPort: 1 },
      );
      expect(config.busCodec?.keys?.currentKeyId).toBe('wm-1');
      expect([...(config.busCodec?.verificationKeys?.keys() ?? [])]).toEqual(['orch-2', 'orch-1']);
    });

    it('verifies with the signing key alone when no verification keys are given; unset means unsigned', () => {
      const config = parseServiceConfig({ MULTIAGENTS_BUS_SIGNING_KEY: `o:${orch}` }, { grpcPort: 1 });
      expect(config.busCodec?.verificationKeys).toBeUndefined();
      expect(config.busCodec?.keys?.keys.size).toBe(1);
      expect(parseServiceConfig({}, { grpcPort: 1 }).busCodec).toBeUndefined();
    });

    it('reads MULTIAGENTS_PAYLOAD_KEYS: 32-byte AES keys, the first encrypts', () => {
      const k = (byte: number): string => Buffer.alloc(32, byte).toString('base64');
      const config = parseServiceConfig(
        { MULTIAGENTS_PAYLOAD_KEYS: `p2:${k(2)},p1:${k(1)}` },
        { grpcPort: 1 },
      );
      expect(config.busCodec?.payloadKeys?.currentKeyId).toBe('p2');
      expect(config.busCodec?.keys).toBeUndefined();
      expect(() =>
        parseServiceConfig(
          { MULTIAGENTS_PAYLOAD_KEYS: `p:${Buffer.alloc(48, 1).toString('base64')}` },
          { grpcPort: 1 },
        ),
      ).toThrow(
        expect.objectContaining({
          problems: ['MULTIAGENTS_PAYLOAD_KEYS: key p is 48 bytes; it must be exactly 32'],
        }),
      );
    });

    it('lists every problem and never quotes a key', () => {
      const short = Buffer.alloc(8, 1).toString('base64');
      let error: unknown;
      try {
        parseServiceConfig(
          {
            MULTIAGENTS_BUS_SIGNING_KEY: `a:${orch},b:${orch}`,
            MULTIAGENTS_BUS_VERIFICATION_KEYS: `x:${short},bad id:${orch}`,
          },
          { grpcPort: 1 },
        );
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ValidationError);
      const problems = (error as ValidationError).problems.join('\n');
      expect(problems).toContain('MULTIAGENTS_BUS_SIGNING_KEY: one keyId:base64key pair');
      expect(problems).toContain(
        'MULTIAGENTS_BUS_VERIFICATION_KEYS: key x is 8 bytes; it must be at least 32',
      );
      expect(problems).toContain('must match');
      expect(problems).not.toContain(orch);
      expect(problems).not.toContain(short);
    });
  });

  describe('broker credentials', () => {
    const problemsOf = (env: Record<string, string>): string => {
      try {
        parseServiceConfig(env, { grpcPort: 1 });
      } catch (err) {
        return (err as ValidationError).problems.join('\n');
      }
      return '';
    };

    it('reads the Redis ACL user, password and TLS files', () => {
      const config = parseServiceConfig(
        {
          MULTIAGENTS_BACKEND: 'redis',
          REDIS_URL: 'rediss://redis.internal:6380',
          REDIS_USERNAME: 'orchestrator',
          REDIS_PASSWORD: 'pw',
          REDIS_TLS_CA: __filename,
        },
        { grpcPort: 1 },
      );
      expect(config.redisCredentials).toEqual({
        username: 'orchestrator',
        password: 'pw',
        tls: { caFile: __filename },
      });
    });

    it('reads NATS credentials: one way to authenticate, and TLS files', () => {
      const config = parseServiceConfig(
        {
          MULTIAGENTS_BACKEND: 'nats',
          NATS_URL: 'tls://nats:4222',
          NATS_TOKEN: 't',
          NATS_TLS_CA: __filename,
        },
        { grpcPort: 1 },
      );
      expect(config.natsCredentials).toEqual({ token: 't', tls: { caFile: __filename } });
      const problems = problemsOf({
        MULTIAGENTS_BACKEND: 'nats',
        NATS_URL: 'nats://u:inline-secret@nats:4222',
        NATS_USER: 'u',
        NATS_TOKEN: 'tok-secret',
        NATS_CREDS_FILE: '/nonexistent/user.creds',
        NATS_TLS_CERT: __filename,
      });
      expect(problems).toContain('NATS_USER and NATS_PASSWORD go together');
      expect(problems).toContain(
        'NATS_USER, NATS_TOKEN, NATS_CREDS_FILE: set one way to authenticate to NATS',
      );
      expect(problems).toContain('NATS_CREDS_FILE=/nonexistent/user.creds: no such file');
      expect(problems).toContain('NATS_TLS_CERT and NATS_TLS_KEY go together');
      expect(problems).toContain('NATS_URL carries credentials');
      expect(problems).not.toMatch(/inline-secret|tok-secret/);
    });

    it('never prints a password from a bad URL', () => {
      const problems = problemsOf({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://app:pa/ss#w@rd@redis:6379',
      });
      expect(problems).toContain('REDIS_URL=redis://***@redis:6379');
      expect(problems).not.toMatch(/pa\/ss|w@rd/);
      const badProtocol = problemsOf({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'http://app:hunter2@redis:6379',
      });
      expect(badProtocol).toContain('protocol must be one of');
      expect(badProtocol).not.toContain('hunter2');
    });

    it('TLS files need a rediss:// URL', () => {
      expect(
        problemsOf({
          MULTIAGENTS_BACKEND: 'redis',
          REDIS_URL: 'redis://redis:6379',
          REDIS_TLS_CA: __filename,
        }),
      ).toContain('need a rediss:// REDIS_URL');
    });
  });
});
