/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import { ErrorCode, type WorkflowDefinition } from '@multiagents/contracts';
import type { DefinitionStore } from '@multiagents/core';

/** What an adapter's factory hands to {@link definitionStoreConformance}: a fresh, empty store per test. */
export interface DefinitionStoreFixture {
  readonly store: DefinitionStore;
  readonly cleanup?: () => Promise<void>;
}

function definition(id: string, version: number, description = `${id} v${version}`): WorkflowDefinition {
  return {
    id,
    version,
    description,
    defaults: { retry: { maxAttempts: 3, initialDelayMs: 100 } },
    steps: [
      {
        kind: 'task',
        name: 'reserve',
        worker: 'inventory',
        compensation: 'release',
        input: { sku: 'input.sku' },
      },
      { kind: 'task', name: 'charge', worker: 'payments', timeoutMs: 5_000 },
      { kind: 'sleep', name: 'cool-down', durationMs: 1_000 },
    ],
  };
}

/**
 * The DefinitionStore contract (a stored version is immutable; registering the same content again
 * is harmless; a different content under an existing id and version is refused) as Jest tests.
 *
 * @example
 * definitionStoreConformance('memory', async () => ({ store: new MemoryDefinitionStore() }));
 */
export function definitionStoreConformance(
  name: string,
  factory: () => Promise<DefinitionStoreFixture>,
): void {
  describe(`DefinitionStore conformance: ${name}`, () => {
    let fixture: DefinitionStoreFixture;
    let store: DefinitionStore;

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup?.();
    });

    it('stores a new definition and returns true', async () => {
      const def = definition('orders', 1);
      expect(await store.put(def)).toBe(true);
      expect(await store.get('orders', 1)).toEqual(def);
    });

    it('returns false for the same content again, whatever its key order', async () => {
      const def = definition('orders', 1);
      await store.put(def);
      const reordered = JSON.parse(
        JSON.stringify({
          steps: def.steps,
          version: 1,
          defaults: def.defaults,
          description: def.description,
          id: 'orders',
        }),
      ) as WorkflowDefinition;
      expect(await store.put(reordered)).toBe(false);
      expect(await store.get('orders', 1)).toEqual(def);
    });

    it('refuses different content under an existing id and version with ALREADY_EXISTS', async () => {
      const def = definition('orders', 1);
      await store.put(def);
      const changed: WorkflowDefinition = { ...def, steps: def.steps.slice(0, 2) };
      await expect(store.put(changed)).rejects.toMatchObject({ code: ErrorCode.AlreadyExists });
      expect(await store.get('orders', 1)).toEqual(def);
    });

    it('returns the latest version without a version, and a specific one with it', async () => {
      await store.put(definition('orders', 1));
      await store.put(definition('orders', 3));
      await store.put(definition('orders', 2));

      expect((await store.get('orders'))?.version).toBe(3);
      expect(await store.get('orders', 2)).toEqual(definition('orders', 2));
      expect(await store.get('orders', 4)).toBeUndefined();
      expect(await store.get('unknown')).toBeUndefined();
    });

    it('keeps a stored version safe from later changes to the object that was put', async () => {
      const def = JSON.parse(JSON.stringify(definition('orders', 1))) as {
        description: string;
        steps: unknown[];
      };
      await store.put(def as unknown as WorkflowDefinition);
      def.description = 'mutated';
      def.steps.pop();
      expect(await store.get('orders', 1)).toEqual(definition('orders', 1));
    });

    it('hands out stored versions that no caller can change (one shared, frozen object)', async () => {
      await store.put(definition('orders', 1));
      for (const got of [await store.get('orders', 1), await store.get('orders')]) {
        const writable = got as unknown as { description: string; steps: unknown[] };
        // A TypeError, possibly of another realm (structuredClone builds in Node's own).
        expect(() => {
          writable.description = 'mutated';
        }).toThrow(/read.only|Cannot assign/);
        expect(() => writable.steps.pop()).toThrow(/Cannot delete|read.only|not extensible/);
      }
      expect(await store.get('orders', 1)).toEqual(definition('orders', 1));
    });

    it('lists each id with its versions ascending, the latest version and its description', async () => {
      await store.put(definition('refunds', 1));
      await store.put(definition('orders', 2, 'orders, second cut'));
      await store.put(definition('orders', 1));

      const summaries = [...(await store.list())].sort((a, b) => a.id.localeCompare(b.id));
      expect(summaries).toEqual([
        { id: 'orders', latestVersion: 2, versions: [1, 2], description: 'orders, second cut' },
        { id: 'refunds', latestVersion: 1, versions: [1], description: 'refunds v1' },
      ]);
    });

    it('lists nothing when empty', async () => {
      expect(await store.list()).toEqual([]);
    });
  });
}
