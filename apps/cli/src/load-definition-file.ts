import { readFileSync } from 'node:fs';
import { ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition } from '@multiagents/core';
import { UsageError } from './exit-codes';

/**
 * Reads a YAML or JSON definition file and checks it here first (structure, CEL), so mistakes are
 * listed before anything is sent; the server checks it again, with the workers it knows.
 */
export function loadDefinitionFile(path: string): WorkflowDefinition {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseDefinition(text);
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new ValidationError(`${path} is not a valid workflow definition`, err.problems);
    }
    throw err;
  }
}
