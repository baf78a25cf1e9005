/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import type { WorkerManagerRecord, WorkerRegistry } from '@multiagents/core';

/** What an adapter's factory hands to {@link workerRegistryConformance}: a fresh, empty registry per test. */
export interface WorkerRegistryFixture {
  readonly registry: WorkerRegistry;
  readonly cleanup?: () => Promise<void>;
}

function record(managerId: string, overrides: Partial<WorkerManagerRecord> = {}): WorkerManagerRecord {
  return {
    managerId,
    workers: ['inventory', 'payments'],
    capacity: 16,
    inFlight: 2,
    seenAt: Date.now(),
    details: { host: 'test' },
    ...overrides,
  };
}

/**
 * The WorkerRegistry contract (an announcement is listed until its time runs out or it is
 * withdrawn; announcing again replaces it; listings are sorted by manager id) as Jest tests. The
 * adapters compare expiry with the system clock, so records are dated in the past to expire them.
 *
 * @example
 * workerRegistryConformance('memory', async () => ({ registry: new MemoryWorkerRegistry() }));
 */
export function workerRegistryConformance(name: string, create: () => Promise<WorkerRegistryFixture>): void {
  describe(`${name} WorkerRegistry conformance`, () => {
    let fixture: WorkerRegistryFixture;
    let registry: WorkerRegistry;

    beforeEach(async () => {
      fixture = await create();
      registry = fixture.registry;
    });

    afterEach(async () => {
      await registry.close();
      await fixture.cleanup?.();
    });

    it('lists what was announced, sorted by manager id, with every field', async () => {
      const b = record('wm-b');
      // `lingering` is optional: one record with it, one without (as an older replica writes it).
      const a = record('wm-a', { workers: ['shipping'], capacity: 4, inFlight: 0, lingering: 3 });
      await registry.announce(b, 60_000);
      await registry.announce(a, 60_000);
      expect(await registry.list()).toEqual([a, b]);
    });

    it('replaces a replica announced again', async () => {
      await registry.announce(record('wm-a', { inFlight: 1 }), 60_000);
      const latest = record('wm-a', { inFlight: 9, workers: ['payments'] });
      await registry.announce(latest, 60_000);
      expect(await registry.list()).toEqual([latest]);
    });

    it('forgets a replica whose time ran out, and keeps the others', async () => {
      const live = record('wm-live');
      await registry.announce(record('wm-gone', { seenAt: Date.now() - 10_000 }), 1_000);
      await registry.announce(live, 60_000);
      expect(await registry.list()).toEqual([live]);
      // Forgotten for good: listing again does not bring it back.
      expect((await registry.list()).map((r) => r.managerId)).toEqual(['wm-live']);
    });

    it('forgets a withdrawn replica at once; withdrawing an unknown one is harmless', async () => {
      await registry.announce(record('wm-a'), 60_000);
      await registry.announce(record('wm-b'), 60_000);
      await registry.withdraw('wm-a');
      await registry.withdraw('never-announced');
      expect((await registry.list()).map((r) => r.managerId)).toEqual(['wm-b']);
    });

    it('keeps manager ids with characters that need escaping apart', async () => {
      const ids = ['host.one:123', 'host one/123', 'hôst-1', 'host.one.123'];
      for (const id of ids) await registry.announce(record(id), 60_000);
      expect((await registry.list()).map((r) => r.managerId)).toEqual([...ids].sort());
    });
  });
}
