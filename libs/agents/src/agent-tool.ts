import type { Logger } from '@multiagents/core';

/** The JSON Schema of a tool's arguments: an object schema, as OpenAI-style tool calling wants. */
export interface ToolParametersSchema {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, ToolPropertySchema>>;
  readonly required?: readonly string[];
}

/** The JSON Schema of one tool argument (every argument needs a description for the model). */
export interface ToolPropertySchema {
  readonly type: 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'object';
  readonly description: string;
  readonly enum?: readonly string[];
  readonly items?: { readonly type: string };
}

/** What a tool's handler gets besides its arguments. */
export interface ToolContext {
  /** The attempt's signal: fires on the step's timeout or cancellation. Pass it to I/O. */
  readonly signal: AbortSignal;
  /** The step's idempotency key (the same on every attempt), for tools with external effects. */
  readonly idempotencyKey: string;
  /** 0 for the attempt's first tool call, then 1, 2, … (the model may call tools in another order on a retry). */
  readonly callIndex: number;
  readonly logger: Logger;
}

/**
 * A typed function a `react` agent may call. Its result (JSON data) goes back to the model; a
 * thrown error goes back to the model as `{ error }` and the loop goes on.
 */
export interface AgentTool<A = Record<string, unknown>, R = unknown> {
  /** Letters, digits, `_` and `-`, starting with a letter (what providers accept). */
  readonly name: string;
  /** What the tool does, for the model. */
  readonly description: string;
  readonly parameters: ToolParametersSchema;
  readonly handler: (args: A, ctx: ToolContext) => Promise<R> | R;
}

/** What tool names look like. */
export const TOOL_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/**
 * Declares a tool with typed arguments. The type is the author's claim: the agent checks the
 * model's arguments against `parameters` one level deep (required, types, enums) before the
 * handler runs, and answers the model with an error result when they do not fit.
 *
 * @example
 * const search = defineTool<{ query: string }, { hits: string[] }>({
 *   name: 'search_corpus',
 *   description: 'Full-text search over the bundled corpus',
 *   parameters: { type: 'object', properties: { query: { type: 'string', description: 'words to find' } }, required: ['query'] },
 *   handler: ({ query }) => ({ hits: corpus.search(query) }),
 * });
 */
export function defineTool<A = Record<string, unknown>, R = unknown>(tool: AgentTool<A, R>): AgentTool<A, R> {
  return Object.freeze({ ...tool });
}

/** Every problem with a list of tools (empty when valid). */
export function validateTools(tools: unknown): string[] {
  if (!Array.isArray(tools)) return ['tools must be an array'];
  const problems: string[] = [];
  const names = new Set<string>();
  tools.forEach((tool: unknown, i) => {
    const t = (typeof tool === 'object' && tool !== null ? tool : {}) as Record<string, unknown>;
    const label = typeof t['name'] === 'string' ? `tool ${JSON.stringify(t['name'])}` : `tools[${i}]`;
    if (typeof t['name'] !== 'string' || !TOOL_NAME_PATTERN.test(t['name'])) {
      problems.push(`${label}: name must match ${TOOL_NAME_PATTERN.source}`);
    } else if (names.has(t['name'])) {
      problems.push(`${label} is listed twice`);
    } else {
      names.add(t['name']);
    }
    if (typeof t['description'] !== 'string' || t['description'].trim() === '') {
      problems.push(`${label}: description must be a non-empty string`);
    }
    if (typeof t['handler'] !== 'function') problems.push(`${label}: handler must be a function`);
    const parameters = t['parameters'] as Record<string, unknown> | undefined;
    if (typeof parameters !== 'object' || parameters === null || parameters['type'] !== 'object') {
      problems.push(`${label}: parameters must be a JSON schema of type "object"`);
    } else {
      const properties = parameters['properties'];
      if (typeof properties !== 'object' || properties === null) {
        problems.push(`${label}: parameters.properties must be an object`);
      } else {
        for (const [name, schema] of Object.entries(properties)) {
          const description = (schema as { description?: unknown } | null)?.description;
          if (typeof description !== 'string' || description.trim() === '') {
            problems.push(`${label}: parameter "${name}" needs a description`);
          }
        }
      }
    }
  });
  return problems;
}
