import { ValidationError } from '@multiagents/contracts';
import { loadConfig } from './config';

describe('orchestrator config', () => {
  it('runs the embedded mode with worker modules', () => {
    const config = loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js,b.js', MULTIAGENTS_DEFINITIONS: 'w.yaml' });
    expect(config).toMatchObject({
      backend: 'memory',
      workerModules: ['a.js', 'b.js'],
      definitionFiles: ['w.yaml'],
    });
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      loadConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://localhost', LOG_LEVEL: 'loud' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      'LOG_LEVEL=loud: must be one of trace, debug, info, warn, error, fatal, silent',
    ]);
  });

  it('requires worker modules in the embedded mode', () => {
    expect(() => loadConfig({})).toThrow(/MULTIAGENTS_WORKER_MODULES is required/);
  });

  it('runs over Redis or NATS without workers of its own', () => {
    expect(loadConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6380' })).toMatchObject({
      backend: 'redis',
      redisUrl: 'redis://127.0.0.1:6380',
      workerModules: [],
    });
    expect(loadConfig({ MULTIAGENTS_BACKEND: 'nats', NATS_URL: 'nats://127.0.0.1:4223' })).toMatchObject({
      backend: 'nats',
      workerModules: [],
    });
  });
});

describe('orchestrator config: hosted workers and recovery', () => {
  const redis = { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6380' };

  it('dispatches eagerly to hosted workers unless told not to', () => {
    expect(loadConfig(redis).eagerDispatch).toBe(true);
    for (const off of ['false', '0', 'NO', ' off ']) {
      expect(loadConfig({ ...redis, MULTIAGENTS_EAGER_DISPATCH: off }).eagerDispatch).toBe(false);
    }
    expect(loadConfig({ ...redis, MULTIAGENTS_EAGER_DISPATCH: 'on' }).eagerDispatch).toBe(true);
  });

  it('reads MULTIAGENTS_REDISPATCH_AFTER_MS, and lists bad values with the others', () => {
    expect(loadConfig(redis).redispatchAfterMs).toBeUndefined();
    expect(loadConfig({ ...redis, MULTIAGENTS_REDISPATCH_AFTER_MS: '2000' }).redispatchAfterMs).toBe(2000);
    expect(() =>
      loadConfig({
        ...redis,
        MULTIAGENTS_EAGER_DISPATCH: 'maybe',
        MULTIAGENTS_REDISPATCH_AFTER_MS: '-5',
        MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '1.5',
      }),
    ).toThrow(
      expect.objectContaining({
        problems: [
          'MULTIAGENTS_EAGER_DISPATCH=maybe: must be true or false',
          'MULTIAGENTS_VISIBILITY_TIMEOUT_MS=1.5: must be a positive integer',
          'MULTIAGENTS_REDISPATCH_AFTER_MS=-5: must be a positive integer',
        ],
      }),
    );
  });
});

describe('orchestrator config: gRPC', () => {
  it('defaults the gRPC settings: loopback only while authentication is off', () => {
    expect(loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js' })).toMatchObject({
      grpcPort: 50051,
      grpcHost: '127.0.0.1',
      httpHost: '127.0.0.1',
      grpcMaxMessageBytes: 4 * 1024 * 1024,
      security: { reflection: true },
    });
    const secured = loadConfig({
      MULTIAGENTS_WORKER_MODULES: 'a.js',
      MULTIAGENTS_AUTH_JWT_SECRET: 'x'.repeat(32),
      MULTIAGENTS_AUTH_JWT_AUDIENCE: 'multiagents',
    });
    expect(secured).toMatchObject({ grpcHost: '0.0.0.0', httpHost: '0.0.0.0' });
    expect(secured.security.auth?.jwt?.audience).toEqual(['multiagents']);
  });

  it('lists security problems with the others', () => {
    let error: unknown;
    try {
      loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js', GRPC_PORT: 'x', MULTIAGENTS_TLS_KEY: '/k.pem' });
    } catch (err) {
      error = err;
    }
    expect((error as ValidationError).problems).toEqual([
      'GRPC_PORT=x: must be a port number from 0 to 65535',
      'MULTIAGENTS_TLS_CERT and MULTIAGENTS_TLS_KEY go together',
    ]);
  });

  it('reads GRPC_PORT, GRPC_HOST and GRPC_MAX_MESSAGE_BYTES, and lists every bad one', () => {
    expect(
      loadConfig({
        MULTIAGENTS_WORKER_MODULES: 'a.js',
        GRPC_PORT: '0',
        GRPC_HOST: '127.0.0.1',
        GRPC_MAX_MESSAGE_BYTES: '1048576',
      }),
    ).toMatchObject({ grpcPort: 0, grpcHost: '127.0.0.1', grpcMaxMessageBytes: 1_048_576 });
    let error: unknown;
    try {
      loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js', GRPC_PORT: 'x', GRPC_MAX_MESSAGE_BYTES: '12' });
    } catch (err) {
      error = err;
    }
    expect((error as ValidationError).problems).toEqual([
      'GRPC_PORT=x: must be a port number from 0 to 65535',
      'GRPC_MAX_MESSAGE_BYTES=12: must be an integer from 1024 to 1073741824',
    ]);
  });
});

describe('orchestrator config: tracing', () => {
  it('is off without an OTLP endpoint, and reads the standard OTEL_* variables', () => {
    expect(loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js' }).tracing).toBeUndefined();
    expect(
      loadConfig({
        MULTIAGENTS_WORKER_MODULES: 'a.js',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.1',
      }).tracing,
    ).toMatchObject({
      tracesUrl: 'http://jaeger:4318/v1/traces',
      serviceName: 'orchestrator',
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.1,
    });
  });

  it('lists OTEL_* problems with the others', () => {
    let error: unknown;
    try {
      loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js', GRPC_PORT: 'x', OTEL_TRACES_SAMPLER_ARG: 'half' });
    } catch (err) {
      error = err;
    }
    expect((error as ValidationError).problems).toEqual([
      'GRPC_PORT=x: must be a port number from 0 to 65535',
      'OTEL_TRACES_SAMPLER_ARG=half: must be a number from 0 to 1',
    ]);
  });
});
