import { startRedisServer, type RedisServerOptions, type ServerProcess } from '@multiagents/testing';
import { createRedisBackend, type RedisBackend } from '../redis-backend';
import type { RedisBackendOptions } from '../redis-backend-options';

let prefixes = 0;

/** A key prefix no other test uses. */
export function freshPrefix(): string {
  prefixes += 1;
  return `t${process.pid}-${prefixes}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A private redis-server for one suite (started in beforeAll, stopped in afterAll) and a factory
 * of backends on it, each with a fresh prefix, closed after each test unless the test closed it.
 */
export function useRedisServer(serverOptions: RedisServerOptions = {}): {
  server: () => ServerProcess;
  backend: (options?: Partial<RedisBackendOptions>) => RedisBackend;
} {
  let server: ServerProcess | undefined;
  const open: RedisBackend[] = [];
  beforeAll(async () => {
    server = await startRedisServer(serverOptions);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((backend) => backend.close()));
  });
  afterAll(async () => {
    await server?.stop();
  });
  const current = (): ServerProcess => {
    if (server === undefined) throw new Error('the redis-server is not started (use inside a test)');
    return server;
  };
  return {
    server: current,
    backend: (options = {}) => {
      const backend = createRedisBackend({
        url: current().url,
        prefix: freshPrefix(),
        // The suites' visibility-timeout tests wait on real time: reclaim often.
        claimIntervalMs: 100,
        ...options,
      });
      open.push(backend);
      return backend;
    },
  };
}
