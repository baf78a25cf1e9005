import { ErrorCode, type WorkflowDefinition } from '@multiagents/contracts';
import { definitionStoreConformance } from '@multiagents/testing';
import { MemoryDefinitionStore } from './memory-definition-store';

definitionStoreConformance('MemoryDefinitionStore', async () => ({ store: new MemoryDefinitionStore() }));

describe('MemoryDefinitionStore specifics', () => {
  const def: WorkflowDefinition = {
    id: 'd',
    version: 1,
    steps: [{ kind: 'sleep', name: 's', durationMs: 5 }],
  };

  it('hands out a frozen copy, so a caller cannot change a stored version', async () => {
    const store = new MemoryDefinitionStore();
    await store.put(def);
    const stored = await store.get('d');
    expect(stored).not.toBe(def);
    expect(() => {
      (stored?.steps as unknown[]).push({});
    }).toThrow(/not extensible/); // by message: structuredClone's objects come from another realm than Jest's
    expect(Object.isFrozen(def)).toBe(false);
  });

  it('treats an explicitly undefined member as absent when comparing content', async () => {
    const store = new MemoryDefinitionStore();
    await store.put(def);
    expect(await store.put({ ...def, description: undefined })).toBe(false);
  });

  it('reports every identity problem at once', async () => {
    const store = new MemoryDefinitionStore();
    await expect(store.put({ ...def, id: '', version: 0 })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      problems: ['id must be a non-empty string', 'version must be an integer >= 1'],
    });
  });
});
