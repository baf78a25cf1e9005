import { AlreadyExistsError, ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import { canonicalJson, deepFreeze, type DefinitionStore, type DefinitionSummary } from '@multiagents/core';

interface StoredDefinition {
  /** A private deep copy, frozen: a stored version is immutable, and callers may share it. */
  readonly definition: WorkflowDefinition;
  /** Content identity, independent of key order. */
  readonly canonical: string;
}

interface DefinitionVersions {
  readonly versions: Map<number, StoredDefinition>;
  latest: number;
}

/**
 * An in-process {@link DefinitionStore}. Putting the same content again under an existing id and
 * version is harmless (returns false); different content there is refused, because runs pin a
 * version and must always find what they started with.
 *
 * @example
 * const definitions = new MemoryDefinitionStore();
 * await definitions.put(orderSaga); // true the first time
 * const latest = await definitions.get('order-saga');
 */
export class MemoryDefinitionStore implements DefinitionStore {
  private readonly byId = new Map<string, DefinitionVersions>();

  async put(definition: WorkflowDefinition): Promise<boolean> {
    const problems: string[] = [];
    if (typeof definition.id !== 'string' || definition.id.length === 0)
      problems.push('id must be a non-empty string');
    if (!Number.isInteger(definition.version) || definition.version < 1)
      problems.push('version must be an integer >= 1');
    if (problems.length > 0) throw new ValidationError('workflow definition', problems);

    const canonical = canonicalJson(definition);
    let entry = this.byId.get(definition.id);
    const existing = entry?.versions.get(definition.version);
    if (existing !== undefined) {
      if (existing.canonical === canonical) return false;
      throw new AlreadyExistsError(
        `workflow ${definition.id} version ${definition.version} exists with different content`,
        { workflowId: definition.id, version: definition.version },
      );
    }
    if (entry === undefined) {
      entry = { versions: new Map(), latest: definition.version };
      this.byId.set(definition.id, entry);
    }
    entry.versions.set(definition.version, {
      definition: deepFreeze(structuredClone(definition)),
      canonical,
    });
    entry.latest = Math.max(entry.latest, definition.version);
    return true;
  }

  async get(id: string, version?: number): Promise<WorkflowDefinition | undefined> {
    const entry = this.byId.get(id);
    if (entry === undefined) return undefined;
    return entry.versions.get(version ?? entry.latest)?.definition;
  }

  /** Sorted by id; versions ascending. */
  async list(): Promise<DefinitionSummary[]> {
    return [...this.byId.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, entry]) => {
        const description = entry.versions.get(entry.latest)?.definition.description;
        return {
          id,
          latestVersion: entry.latest,
          versions: [...entry.versions.keys()].sort((a, b) => a - b),
          ...(description === undefined ? {} : { description }),
        };
      });
  }

  /** Nothing to release: definitions live as long as the process. */
  async close(): Promise<void> {}
}
