import { definitionStoreConformance, startRedisServer, type ServerProcess } from '@multiagents/testing';
import { RedisDefinitionStore } from './redis-definition-store';

let server: ServerProcess;
let prefixes = 0;

beforeAll(async () => {
  server = await startRedisServer();
});

afterAll(async () => {
  await server.stop();
});

definitionStoreConformance('redis', async () => {
  const store = new RedisDefinitionStore({ url: server.url, prefix: `t${process.pid}-${++prefixes}` });
  return { store, cleanup: () => store.close() };
});

describe('RedisDefinitionStore (adapter-specific)', () => {
  it('shares definitions between stores with one prefix, and isolates prefixes', async () => {
    const a = new RedisDefinitionStore({ url: server.url, prefix: 'shared-defs' });
    const b = new RedisDefinitionStore({ url: server.url, prefix: 'shared-defs' });
    const other = new RedisDefinitionStore({ url: server.url, prefix: 'other-defs' });
    try {
      const definition = {
        id: 'orders',
        version: 1,
        steps: [{ kind: 'task' as const, name: 's', worker: 'w' }],
      };
      expect(await a.put(definition)).toBe(true);
      expect(await b.put(definition)).toBe(false);
      expect(await b.get('orders')).toEqual(definition);
      expect(await other.get('orders')).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });

  it('refuses calls after close', async () => {
    const store = new RedisDefinitionStore({ url: server.url, prefix: 'closed-defs' });
    await store.close();
    await expect(store.list()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
  });
});
