import { ValidationError } from '@multiagents/contracts';
import { loadConfig } from './config';

function problemsOf(env: NodeJS.ProcessEnv): readonly string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ValidationError) return err.problems;
    throw err;
  }
  return [];
}

describe('worker-manager config', () => {
  it('refuses the memory backend and missing worker modules, listing both', () => {
    const problems = problemsOf({});
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/MULTIAGENTS_WORKER_MODULES is required/);
    expect(problems[1]).toMatch(/needs a shared backend/);
  });

  it('reads a Redis replica with its delivery tuning', () => {
    expect(
      loadConfig({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://127.0.0.1:6400',
        MULTIAGENTS_WORKER_MODULES: 'w.js',
        MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '2000',
        MULTIAGENTS_MAX_DELIVERIES: '7',
      }),
    ).toMatchObject({
      backend: 'redis',
      workerModules: ['w.js'],
      visibilityTimeoutMs: 2000,
      maxDeliveries: 7,
    });
  });

  it('serves gRPC on 127.0.0.1:50052 (0.0.0.0 with authentication) unless GRPC_HOST and GRPC_PORT say otherwise', () => {
    const base = {
      MULTIAGENTS_BACKEND: 'nats',
      NATS_URL: 'nats://127.0.0.1:4222',
      MULTIAGENTS_WORKER_MODULES: 'w.js',
    };
    expect(loadConfig(base)).toMatchObject({ grpcHost: '127.0.0.1', httpHost: '127.0.0.1', grpcPort: 50052 });
    expect(
      loadConfig({
        ...base,
        MULTIAGENTS_AUTH_JWT_SECRET: 'x'.repeat(32),
        MULTIAGENTS_AUTH_JWT_AUDIENCE: 'multiagents',
      }),
    ).toMatchObject({ grpcHost: '0.0.0.0', grpcPort: 50052 });
    expect(loadConfig({ ...base, GRPC_HOST: '127.0.0.1', GRPC_PORT: '0' })).toMatchObject({
      grpcHost: '127.0.0.1',
      grpcPort: 0,
    });
    expect(problemsOf({ ...base, GRPC_PORT: '70000' })).toEqual([
      'GRPC_PORT=70000: must be a port number from 0 to 65535',
    ]);
  });

  it('lists a wrong REDIS_URL and bad tuning together', () => {
    const problems = problemsOf({
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: 'http://nope',
      MULTIAGENTS_WORKER_MODULES: 'w.js',
      MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '-1',
      // "Never give up" written as a huge number: a timer would fire it after 1 ms.
      MULTIAGENTS_DRAIN_TIMEOUT_MS: '3000000000',
    });
    expect(problems).toEqual([
      expect.stringMatching(/^REDIS_URL=http:\/\/nope/),
      'MULTIAGENTS_VISIBILITY_TIMEOUT_MS=-1: must be a positive integer',
      'MULTIAGENTS_DRAIN_TIMEOUT_MS=3000000000: must be at most 2147483647 (what a timer can wait, about 24.8 days)',
    ]);
  });

  it('reads the TLS and JWKS files at start: a missing one is a configuration error (exit 78)', () => {
    expect(
      problemsOf({
        MULTIAGENTS_BACKEND: 'nats',
        NATS_URL: 'nats://127.0.0.1:4222',
        MULTIAGENTS_WORKER_MODULES: 'w.js',
        MULTIAGENTS_AUTH_JWKS_FILE: '/nonexistent/jwks.json',
        MULTIAGENTS_AUTH_JWT_AUDIENCE: 'multiagents',
      }),
    ).toEqual(['MULTIAGENTS_AUTH_JWKS_FILE: cannot read /nonexistent/jwks.json: ENOENT']);
  });
});

describe('worker-manager config: tracing', () => {
  const base = {
    MULTIAGENTS_BACKEND: 'redis',
    REDIS_URL: 'redis://127.0.0.1:6400',
    MULTIAGENTS_WORKER_MODULES: 'w.js',
  };

  it('is off without an OTLP endpoint, and names the service worker-manager by default', () => {
    expect(loadConfig(base).tracing).toBeUndefined();
    expect(
      loadConfig({ ...base, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }).tracing,
    ).toMatchObject({
      tracesUrl: 'http://c:4318/v1/traces',
      serviceName: 'worker-manager',
    });
  });

  it('lists OTEL_* problems with the others', () => {
    expect(
      problemsOf({ ...base, MULTIAGENTS_MAX_DELIVERIES: '0', OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }),
    ).toEqual([
      'MULTIAGENTS_MAX_DELIVERIES=0: must be a positive integer',
      'OTEL_EXPORTER_OTLP_ENDPOINT=localhost:4318: must be an http:// or https:// URL',
    ]);
  });
});
