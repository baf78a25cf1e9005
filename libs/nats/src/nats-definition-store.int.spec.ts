import type { NatsContext } from './nats-context';
import { TEST_REQUEST_TIMEOUT_MS, useNatsTestServer } from './testing/nats-test-backend';

jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

const nats = useNatsTestServer();

const version = (v: number) => ({
  id: 'orders',
  version: v,
  steps: [{ kind: 'task' as const, name: 's', worker: `w${v}` }],
});

describe('NatsDefinitionStore (adapter-specific)', () => {
  it('reads the latest version once per turn, and never serves a stale one', async () => {
    const api = await nats().backend();
    const admin = await nats().backend({ prefix: api.names.prefix });
    // The store's reads, counted where they leave it (the context is the store's only way out).
    const ctx = (api.definitions as unknown as { ctx: NatsContext }).ctx;
    const kvGet = jest.spyOn(ctx, 'kvGet');
    const latestReads = () =>
      kvGet.mock.calls.filter(([, key]) => key === api.names.latestDefinition('orders'));
    try {
      await admin.definitions.put(version(1));
      // Fifty starts in one turn: one read of the latest version.
      const first = await Promise.all(Array.from({ length: 50 }, () => api.definitions.get('orders')));
      expect(first.every((d) => d?.version === 1)).toBe(true);
      expect(latestReads()).toHaveLength(1);
      // The same revision read again is not parsed again: the very same frozen object comes back.
      const again = await api.definitions.get('orders');
      expect(again).toBe(first[0]);
      expect(latestReads()).toHaveLength(2);
      // A version put by another process is what the next start sees: nothing is served from memory.
      await admin.definitions.put(version(2));
      expect((await api.definitions.get('orders'))?.version).toBe(2);
      expect(latestReads()).toHaveLength(3);
      // A get that began after the read was sent does not share it: it reads again, after the put.
      const early = api.definitions.get('orders');
      await new Promise((resolve) => setImmediate(resolve)); // early's read is sent
      await admin.definitions.put(version(3));
      const late = api.definitions.get('orders');
      expect([2, 3]).toContain((await early)?.version); // overlapped the put: either is right
      expect((await late)?.version).toBe(3);
      expect(latestReads()).toHaveLength(5);
    } finally {
      kvGet.mockRestore();
      await Promise.all([api.close(), admin.close()]);
      await nats().destroy(api.names.prefix);
    }
  });

  it('serves the latest version from memory for definitionCacheMs when asked to', async () => {
    const api = await nats().backend({ definitionCacheMs: 60_000 });
    const admin = await nats().backend({ prefix: api.names.prefix });
    try {
      await admin.definitions.put(version(1));
      expect((await api.definitions.get('orders'))?.version).toBe(1);
      await admin.definitions.put(version(2));
      // Another process's version is not seen while the cached one is fresh ...
      expect((await api.definitions.get('orders'))?.version).toBe(1);
      // ... one put through this store is, at once.
      await api.definitions.put(version(3));
      expect((await api.definitions.get('orders'))?.version).toBe(3);
    } finally {
      await Promise.all([api.close(), admin.close()]);
      await nats().destroy(api.names.prefix);
    }
  });
});
