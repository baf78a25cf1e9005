import type { WorkflowDefinition } from '@multiagents/contracts';

/** A registered definition's summary. */
export interface DefinitionSummary {
  readonly id: string;
  readonly latestVersion: number;
  readonly versions: readonly number[];
  readonly description?: string;
}

/** Registered workflow definitions; a stored version is immutable. */
export interface DefinitionStore {
  /**
   * Stores a definition. Returns false when the same id and version exist with the same content;
   * throws AlreadyExistsError when they exist with different content.
   */
  put(definition: WorkflowDefinition): Promise<boolean>;
  /** The given version, or the latest when `version` is omitted. */
  get(id: string, version?: number): Promise<WorkflowDefinition | undefined>;
  list(): Promise<DefinitionSummary[]>;
  close(): Promise<void>;
}
