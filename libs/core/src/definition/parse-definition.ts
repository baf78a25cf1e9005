import {
  MultiAgentsError,
  ValidationError,
  checkJsonBounds,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { parse as parseYaml } from 'yaml';
import { compileWorkflow, DEFINITION_LIMITS, type ValidateDefinitionOptions } from './validate-definition';

/** Largest definition text accepted (bytes of UTF-8). */
export const MAX_DEFINITION_BYTES = 256 * 1024;

/** A task step may leave out `kind`; so may its parallel branches' steps. */
function withKinds(steps: unknown): unknown {
  if (!Array.isArray(steps)) return steps;
  return steps.map((step: unknown) => {
    if (typeof step !== 'object' || step === null || Array.isArray(step)) return step;
    const record = step as Record<string, unknown>;
    const kind = record['kind'] ?? ('worker' in record ? 'task' : undefined);
    const branches = Array.isArray(record['branches'])
      ? { branches: (record['branches'] as unknown[]).map(withKinds) }
      : {};
    return { ...record, ...(kind === undefined ? {} : { kind }), ...branches };
  });
}

/**
 * Reads a workflow definition from YAML or JSON text (JSON is YAML, so one parser reads both),
 * then validates it. Throws a ValidationError listing every problem.
 */
export function parseDefinition(text: string, options: ValidateDefinitionOptions = {}): WorkflowDefinition {
  if (Buffer.byteLength(text, 'utf8') > MAX_DEFINITION_BYTES) {
    throw new ValidationError('invalid workflow definition', [`text is over ${MAX_DEFINITION_BYTES} bytes`]);
  }
  let data: unknown;
  try {
    // Aliases are capped so a "billion laughs" document cannot blow up memory.
    data = parseYaml(text, { maxAliasCount: 100, prettyErrors: false });
  } catch (err) {
    throw new ValidationError('invalid workflow definition', [
      `not valid YAML or JSON: ${(err as Error).message}`,
    ]);
  }
  // Before anything recurses into it (withKinds, the validator): deep documents parse fine.
  try {
    checkJsonBounds(data, {
      maxBytes: DEFINITION_LIMITS.maxBytes,
      maxDepth: DEFINITION_LIMITS.maxDepth,
      what: 'definition',
    });
  } catch (err) {
    if (!(err instanceof MultiAgentsError)) throw err;
    throw new ValidationError(
      'invalid workflow definition',
      err instanceof ValidationError ? err.problems : [err.message],
    );
  }
  if (typeof data === 'object' && data !== null && !Array.isArray(data)) {
    const record = data as Record<string, unknown>;
    data = { ...record, steps: withKinds(record['steps']) };
  }
  return compileWorkflow(data, options).definition;
}
