import { MemoryDefinitionStore } from '@multiagents/memory';
import { ManualClock } from '@multiagents/testing';
import { DefinitionCatalog } from './definition-catalog';
import { LabelBounds } from './label-bounds';
import { ORDER_WORKFLOW } from './testing/order-workflow';

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, child: () => silent };

describe('DefinitionCatalog', () => {
  const setup = (minIntervalMs = 3_600_000) => {
    const clock = new ManualClock();
    const store = new MemoryDefinitionStore();
    const bounds = new LabelBounds();
    let reads = 0;
    const counted = {
      list: () => {
        reads += 1;
        return store.list();
      },
      get: (id: string, version: number) => store.get(id, version),
    };
    const catalog = new DefinitionCatalog(counted, bounds, clock, silent, minIntervalMs);
    return { clock, store, bounds, catalog, reads: () => reads };
  };

  it('learns a workflow registered in the same millisecond as the read before its first event', async () => {
    const { clock, store, bounds, catalog } = setup();
    await catalog.refresh();
    // Registered and started without the clock moving: the read above may have come first.
    await store.put(ORDER_WORKFLOW);
    await catalog.ensure(ORDER_WORKFLOW.id, clock.now());
    expect(bounds.knowsWorkflow(ORDER_WORKFLOW.id)).toBe(true);
  });

  it('reads at most once per interval for a workflow nobody registered', async () => {
    const { clock, catalog, reads } = setup(1_000);
    await catalog.refresh();
    clock.advance(5);
    const before = reads();
    // Events made before the last read: that read would have known the workflow.
    for (let i = 0; i < 10; i++) await catalog.ensure('forged', clock.now() - 10);
    expect(reads() - before).toBe(0);
    clock.advance(1_000);
    for (let i = 0; i < 10; i++) await catalog.ensure('forged', clock.now() - 2_000);
    expect(reads() - before).toBe(1);
  });
});
