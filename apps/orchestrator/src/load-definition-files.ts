import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition, validateDefinition } from '@multiagents/core';

/**
 * Reads and validates definition files (YAML or JSON). Throws one ValidationError listing every
 * problem of every file, each prefixed with its file.
 */
export function loadDefinitionFiles(paths: readonly string[]): WorkflowDefinition[] {
  const problems: string[] = [];
  const definitions: WorkflowDefinition[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(resolve(path), 'utf8');
    } catch (err) {
      problems.push(`${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      continue;
    }
    try {
      const definition = parseDefinition(text);
      const invalid = validateDefinition(definition);
      if (invalid.length > 0) problems.push(...invalid.map((p) => `${path}: ${p}`));
      else definitions.push(definition);
    } catch (err) {
      const found = err instanceof ValidationError ? err.problems : [(err as Error).message];
      problems.push(...found.map((p) => `${path}: ${p}`));
    }
  }
  if (problems.length > 0) throw new ValidationError('invalid definition files', problems);
  return definitions;
}
