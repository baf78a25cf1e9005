import type { ToolParametersSchema, ToolPropertySchema } from './agent-tool';

function typeProblem(schema: ToolPropertySchema, value: unknown): string | undefined {
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return 'must be a string';
      if (schema.enum !== undefined && !schema.enum.includes(value)) {
        return `must be one of ${schema.enum.join(', ')}`;
      }
      return undefined;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? undefined : 'must be a number';
    case 'integer':
      return Number.isSafeInteger(value) ? undefined : 'must be an integer';
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'must be a boolean';
    case 'array':
      return Array.isArray(value) ? undefined : 'must be an array';
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value)
        ? undefined
        : 'must be an object';
    default:
      return undefined;
  }
}

/**
 * The problems of a model's tool arguments against the tool's schema, one level deep (required
 * properties present, declared types and enums respected): enough to tell the model what to fix
 * without a JSON Schema engine. Unknown properties are allowed.
 */
export function checkToolArguments(args: unknown, schema: ToolParametersSchema): string[] {
  if (typeof args !== 'object' || args === null || Array.isArray(args))
    return ['arguments must be an object'];
  const given = args as Record<string, unknown>;
  const problems: string[] = [];
  for (const name of schema.required ?? []) {
    if (!Object.hasOwn(given, name) || given[name] === undefined) problems.push(`"${name}" is required`);
  }
  for (const [name, property] of Object.entries(schema.properties)) {
    if (!Object.hasOwn(given, name) || given[name] === undefined) continue;
    const problem = typeProblem(property, given[name]);
    if (problem !== undefined) problems.push(`"${name}" ${problem}`);
  }
  return problems;
}
