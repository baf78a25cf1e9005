import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition } from '@multiagents/core';

/** Reads and validates definition files (YAML or JSON). */
export function loadDefinitionFiles(paths: readonly string[]): WorkflowDefinition[] {
  return paths.map((path) => {
    try {
      return parseDefinition(readFileSync(resolve(path), 'utf8'));
    } catch (err) {
      if (err instanceof ValidationError) throw new ValidationError(`${path}`, err.problems);
      throw new ValidationError(`${path}`, [(err as Error).message]);
    }
  });
}
