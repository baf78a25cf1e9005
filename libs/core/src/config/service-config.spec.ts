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

  it('splits list variables', () => {
    expect(listVariable({ X: ' a.js, ,b.js ' }, 'X')).toEqual(['a.js', 'b.js']);
    expect(listVariable({}, 'X')).toEqual([]);
  });
});
