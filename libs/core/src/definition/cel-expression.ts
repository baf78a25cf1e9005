import { Environment } from '@marcbachmann/cel-js';

/** Limits that bound what one expression may cost, checked when it is compiled. */
export interface CelLimits {
  readonly maxLength: number;
  readonly maxAstNodes: number;
  readonly maxDepth: number;
  /** Comprehensions (`all`, `exists`, `map`, `filter`…) nested inside each other: each level multiplies cost. */
  readonly maxComprehensionNesting: number;
}

/** The limits used unless a caller asks for others. */
export const DEFAULT_CEL_LIMITS: CelLimits = {
  maxLength: 2_000,
  maxAstNodes: 400,
  maxDepth: 32,
  maxComprehensionNesting: 2,
};

/** The variables an expression sees. */
export interface CelActivation {
  readonly context: Record<string, unknown>;
  readonly input: Record<string, unknown>;
  readonly steps: Record<string, { readonly status: string; readonly output?: unknown }>;
}

/** A compiled expression: parse once, evaluate many times. */
export interface CelProgram {
  readonly source: string;
  /** Step names the expression reads through `steps.<name>`. */
  readonly stepRefs: readonly string[];
  evaluate(activation: CelActivation): unknown;
}

const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

interface AstNode {
  readonly op: string;
  readonly args: unknown;
}

function isAstNode(value: unknown): value is AstNode {
  return typeof value === 'object' && value !== null && 'op' in value && 'args' in value;
}

/** Deepest nesting of comprehension macros in the tree. */
function comprehensionNesting(node: unknown): number {
  if (Array.isArray(node)) return node.reduce((max: number, n) => Math.max(max, comprehensionNesting(n)), 0);
  if (!isAstNode(node)) return 0;
  const inner = comprehensionNesting(node.args);
  const isComprehension =
    node.op === 'rcall' && Array.isArray(node.args) && COMPREHENSIONS.has(node.args[0] as string);
  return inner + (isComprehension ? 1 : 0);
}

function isStepsVariable(node: unknown): boolean {
  return isAstNode(node) && node.op === 'id' && node.args === 'steps';
}

/**
 * Names read as `steps.<name>` or `steps["<name>"]`. Returns false when `steps` is used any other
 * way (a computed index, the whole map): then the names it reads cannot be checked statically, and
 * a reference to a later step or to itself would slip past validation.
 */
function collectStepRefs(node: unknown, into: Set<string>): boolean {
  if (Array.isArray(node)) return node.every((n) => collectStepRefs(n, into));
  if (!isAstNode(node)) return true;
  if (isStepsVariable(node)) return false;
  if ((node.op === '.' || node.op === '[]') && Array.isArray(node.args) && isStepsVariable(node.args[0])) {
    const key: unknown = node.args[1];
    if (node.op === '.' && typeof key === 'string') {
      into.add(key);
      return true;
    }
    if (node.op === '[]' && isAstNode(key) && key.op === 'value' && typeof key.args === 'string') {
      into.add(key.args);
      return true;
    }
    return false;
  }
  return collectStepRefs(node.args, into);
}

/** Converts CEL results (BigInt ints, Maps) into plain JSON values. */
export function celToJson(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) out[String(k)] = celToJson(v);
    return out;
  }
  if (Array.isArray(value)) return value.map(celToJson);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = celToJson(v);
    return out;
  }
  return value;
}

/**
 * Compiles CEL (never JavaScript: a definition is data and may come from an untrusted caller).
 * Expressions see `context`, `input` and `steps`, and must stay within {@link CelLimits}.
 */
export class CelCompiler {
  private readonly env: Environment;

  constructor(private readonly limits: CelLimits = DEFAULT_CEL_LIMITS) {
    this.env = new Environment({
      homogeneousAggregateLiterals: false,
      limits: { maxAstNodes: limits.maxAstNodes, maxDepth: limits.maxDepth },
    });
    this.env.registerVariable('context', 'map');
    this.env.registerVariable('input', 'map');
    this.env.registerVariable('steps', 'map');
  }

  /** Parses and checks `source`; throws an Error whose message says what is wrong. */
  compile(source: string): CelProgram {
    if (source.length > this.limits.maxLength) {
      throw new Error(
        `expression is ${source.length} characters, over the limit of ${this.limits.maxLength}`,
      );
    }
    let parsed: ReturnType<Environment['parse']>;
    try {
      parsed = this.env.parse(source);
    } catch (err) {
      throw new Error(firstLine(err));
    }
    const check = parsed.check();
    if (!check.valid) throw new Error(firstLine(check.error));
    const nesting = comprehensionNesting(parsed.ast);
    if (nesting > this.limits.maxComprehensionNesting) {
      throw new Error(
        `expression cost too high: ${nesting} nested comprehensions (limit ${this.limits.maxComprehensionNesting})`,
      );
    }
    const refs = new Set<string>();
    if (!collectStepRefs(parsed.ast, refs)) {
      throw new Error('steps may only be read as steps.<name> or steps["<name>"] with a constant step name');
    }
    return {
      source,
      stepRefs: [...refs],
      evaluate: (activation): unknown => parsed(activation),
    };
  }
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}
