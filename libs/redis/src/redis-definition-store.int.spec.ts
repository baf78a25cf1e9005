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

  it('reads the latest version once per turn, and never serves a stale one', async () => {
    const api = new RedisDefinitionStore({ url: server.url, prefix: 'latest-defs' });
    const admin = new RedisDefinitionStore({ url: server.url, prefix: 'latest-defs' });
    const hget = jest.spyOn(api.connection.client, 'hget');
    const version = (v: number) => ({
      id: 'orders',
      version: v,
      steps: [{ kind: 'task' as const, name: 's', worker: `w${v}` }],
    });
    try {
      await admin.put(version(1));
      // Fifty starts in one turn: one read of the latest version (version 1 itself is read until cached).
      const first = await Promise.all(Array.from({ length: 50 }, () => api.get('orders')));
      expect(first.every((d) => d?.version === 1)).toBe(true);
      expect(hget.mock.calls.filter(([, field]) => field === 'latest')).toHaveLength(1);
      // A version put by another process is what the next start sees: nothing is cached.
      await admin.put(version(2));
      expect((await api.get('orders'))?.version).toBe(2);
      expect(hget.mock.calls.filter(([, field]) => field === 'latest')).toHaveLength(2);
      // A get that began after the read was sent does not share it: it reads again, after the put.
      const early = api.get('orders');
      await new Promise((resolve) => setImmediate(resolve)); // early's read is sent
      await admin.put(version(3));
      const late = api.get('orders');
      expect([2, 3]).toContain((await early)?.version); // overlapped the put: either is right
      expect((await late)?.version).toBe(3);
      expect(hget.mock.calls.filter(([, field]) => field === 'latest')).toHaveLength(4);
    } finally {
      hget.mockRestore();
      await Promise.all([api.close(), admin.close()]);
    }
  });

  it('refuses calls after close', async () => {
    const store = new RedisDefinitionStore({ url: server.url, prefix: 'closed-defs' });
    await store.close();
    await expect(store.list()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
  });
});
