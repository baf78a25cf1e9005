import { Environment } from '@marcbachmann/cel-js';
import { ResourceExhaustedError } from '@multiagents/contracts';
import { RE2JS } from 're2js';

/**
 * Limits that bound what one expression may cost: the first four are checked when it is compiled,
 * `maxCost` on every evaluation (a compile-time bound cannot see how large the data will be).
 */
export interface CelLimits {
  readonly maxLength: number;
  readonly maxAstNodes: number;
  readonly maxDepth: number;
  /** Comprehensions (`all`, `exists`, `map`, `filter`…) nested inside each other: each level multiplies cost. */
  readonly maxComprehensionNesting: number;
  /**
   * Cost units one evaluation may spend before it is aborted with RESOURCE_EXHAUSTED: 1 per node
   * evaluated (each comprehension iteration evaluates its body again), plus the size of every list
   * or map a node yields, plus a string's length / 8, plus input length × pattern length / 32 for
   * a regular expression match, plus 10 for an error. Measured at 0.1-0.2 µs a unit on Node 20:
   * the default stops an expression within about 0.2 s, whatever data it is given.
   */
  readonly maxCost: number;
}

/** The limits used unless a caller asks for others. */
export const DEFAULT_CEL_LIMITS: CelLimits = {
  maxLength: 2_000,
  maxAstNodes: 400,
  maxDepth: 32,
  maxComprehensionNesting: 2,
  maxCost: 1_000_000,
};

/** Deepest data an expression may be evaluated over (inputs are bounded far below this at entry). */
const MAX_ACTIVATION_DEPTH = 256;

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

/** Every identifier the tree reads (the activation's variables, and comprehension variables). */
function collectIds(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) collectIds(item, into);
    return;
  }
  if (!isAstNode(node)) return;
  if (node.op === 'id' && typeof node.args === 'string') into.add(node.args);
  else collectIds(node.args, into);
}

/** What an expression that never reads a variable gets for it. */
const UNREAD = new Map<string, unknown>();

/** The records of the steps an expression reads, as the evaluator reads them. */
function stepsToCel(steps: CelActivation['steps'], names: readonly string[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (const name of names) if (Object.hasOwn(steps, name)) map.set(name, toCel(steps[name]));
  return map;
}

/**
 * Converts CEL results (BigInt ints and uints, Maps, timestamps) into plain JSON values. Keys are
 * defined, never assigned, so a map key `__proto__` stays data instead of replacing the result's
 * prototype. What JSON cannot hold throws (the step then fails with EXPRESSION_ERROR): an integer
 * beyond ±2^53 (it would be rounded), a double that is not finite, bytes, a duration.
 */
export function celToJson(value: unknown): unknown {
  if (typeof value === 'bigint') return safeNumber(value);
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new Error(`the result ${String(value)} is not a JSON number`);
  }
  if (value instanceof Map) {
    return Object.fromEntries([...value].map(([k, v]) => [String(k), celToJson(v)]));
  }
  if (Array.isArray(value)) return value.map(celToJson);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === null || Object.getPrototypeOf(proto) === null) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, celToJson(v)]));
    }
    // A uint (`1u`) is an object whose value is a BigInt.
    const primitive: unknown = (value as { valueOf(): unknown }).valueOf();
    if (typeof primitive === 'bigint') return safeNumber(primitive);
    const type = (value as { constructor?: { name?: unknown } }).constructor?.name;
    throw new Error(
      `the result is ${typeof type === 'string' ? `a ${type}` : 'a value'}, not JSON data (convert it, e.g. with string())`,
    );
  }
  return value;
}

function safeNumber(value: bigint): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) {
    throw new Error(`the integer ${value} is beyond what a JSON number holds exactly (±2^53)`);
  }
  return number;
}

/**
 * JSON data → what the evaluator reads: plain objects become Maps. cel-js types a plain object by
 * its `constructor` property, so a context key named `constructor` (or an object without a
 * prototype) made every expression fail with "Unsupported type"; a Map has no such key.
 */
function toCel(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_ACTIVATION_DEPTH) {
    throw new ResourceExhaustedError(`data is nested more than ${MAX_ACTIVATION_DEPTH} levels deep`);
  }
  if (Array.isArray(value)) return value.map((item) => toCel(item, depth + 1));
  if (value instanceof Map) return value;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== null && Object.getPrototypeOf(proto) !== null) return value;
  const map = new Map<string, unknown>();
  for (const [key, item] of Object.entries(value)) map.set(key, toCel(item, depth + 1));
  return map;
}

/** What one evaluation has spent so far. */
class CostMeter {
  spent = 0;

  constructor(
    private readonly max: number,
    private readonly source: string,
  ) {}

  charge(units: number): void {
    this.spent += units;
    if (this.spent > this.max) throw this.exceeded();
  }

  /** True once over budget: some operators swallow errors (`exists`, `||`), so this is checked at the end too. */
  get tripped(): boolean {
    return this.spent > this.max;
  }

  /** One error per evaluation: quantifiers catch and go on, so it may be thrown many times. */
  exceeded(): ResourceExhaustedError {
    this.error ??= new ResourceExhaustedError(
      `expression ${clip(this.source)} exceeded its cost budget of ${this.max} units while evaluating`,
      { maxCost: this.max },
    );
    return this.error;
  }

  private error: ResourceExhaustedError | undefined;

  /** Charges what a node yielded: large values are what makes the next operations costly. */
  chargeValue(value: unknown): void {
    if (typeof value === 'string') this.charge(value.length >>> 3);
    else if (Array.isArray(value)) this.charge(value.length);
    else if (value instanceof Map) this.charge(value.size);
  }
}

/** What an evaluation error costs, in nodes (see the wrapper in {@link instrument}). */
const ERROR_COST = 10;

const PASS_THROUGH_OPS = new Set(['accuPush', 'accuValue', 'accuInc', '?:']);

/** The evaluation under way (evaluation is synchronous, so at most one at a time). */
let meter: CostMeter | undefined;

type NodeEvaluate = (ev: unknown, ast: unknown, ctx: unknown) => unknown;

/** The cel-js AST node members the cost meter relies on. */
interface EvaluableNode extends AstNode {
  evaluate: NodeEvaluate;
  readonly meta: {
    readonly alternate?: EvaluableNode;
    readonly macro?: { evaluate: NodeEvaluate };
    readonly evaluate: NodeEvaluate;
  };
}

function isEvaluableNode(value: unknown): value is EvaluableNode {
  return isAstNode(value) && typeof (value as { evaluate?: unknown }).evaluate === 'function';
}

/** A regular expression compiled by RE2 (linear time in the input, no backtracking). */
function compileRegex(pattern: string): RE2JS {
  try {
    return RE2JS.compile(pattern);
  } catch (err) {
    throw new Error(
      `invalid or unsupported regular expression (RE2 syntax, no backreferences or lookaround): ${firstLine(err)}`,
    );
  }
}

/**
 * `s.matches(re)` through RE2 (CEL's own regex dialect) instead of JavaScript's backtracking
 * engine, where a pattern like `(a+)+$` doubles its time with every character. A constant pattern
 * is compiled once, at compile time, so a definition with a bad one is refused when registered.
 */
function linearMatches(node: EvaluableNode): void {
  const [, receiver, args] = node.args as [string, EvaluableNode, EvaluableNode[]];
  const patternNode = args[0] as EvaluableNode;
  const constant =
    patternNode.op === 'value' && typeof patternNode.args === 'string'
      ? compileRegex(patternNode.args)
      : undefined;
  node.evaluate = (ev, _ast, ctx) => {
    const run = (child: EvaluableNode): unknown => child.evaluate(ev, child, ctx);
    const text = run(receiver);
    const pattern = constant ?? run(patternNode);
    if (typeof text !== 'string') throw new Error('matches() needs a string');
    const regex =
      pattern instanceof RE2JS ? pattern : typeof pattern === 'string' ? compileRegex(pattern) : undefined;
    if (regex === undefined) throw new Error('matches() needs a string pattern');
    meter?.charge(1 + Math.ceil(((text.length + 1) * (regex.pattern().length + 1)) / 32));
    return regex.matcher(text).find();
  };
}

/**
 * Wraps every node of a parsed expression (macro expansions included) so that evaluating it
 * charges the meter: the runtime half of the cost limit, as Kubernetes does for CEL.
 */
function instrument(root: unknown): void {
  const seen = new Set<unknown>();
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== 'object' || seen.has(value)) continue;
    seen.add(value);
    if (Array.isArray(value)) {
      pending.push(...(value as unknown[]));
      continue;
    }
    if (!isEvaluableNode(value)) {
      // Comprehension arguments: { iterable, init, step, … }.
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto === null || Object.getPrototypeOf(proto) === null) {
        pending.push(...Object.values(value as Record<string, unknown>));
      }
      continue;
    }
    const node = value;
    pending.push(node.args, node.meta.alternate);
    if (node.op === 'rcall' && Array.isArray(node.args) && node.args[0] === 'matches') {
      linearMatches(node);
      const inner = node.evaluate;
      node.evaluate = (ev, ast, ctx) => {
        meter?.charge(1);
        return inner(ev, ast, ctx);
      };
      continue;
    }
    const wrapped: NodeEvaluate = (ev, ast, ctx) => {
      meter?.charge(1);
      const meta = node.meta;
      let result: unknown;
      try {
        if (meta.alternate) result = meta.alternate.evaluate(ev, meta.alternate, ctx);
        else if (meta.macro) result = meta.macro.evaluate(ev, meta.macro, ctx);
        else result = meta.evaluate(ev, ast, ctx);
      } catch (err) {
        // Building an evaluation error costs about ten nodes, and `exists` or `||` may swallow
        // one per iteration: an expression that fails everywhere must not run for free.
        if (meter !== undefined && !meter.tripped) meter.charge(ERROR_COST);
        throw err;
      }
      // Values handed through (the list an accumulator builds, a ternary's branch, a macro's
      // expansion) were charged where they were made: charging them again at every step would
      // make a linear `filter` look quadratic.
      if (!PASS_THROUGH_OPS.has(node.op) && !meta.alternate && !meta.macro) meter?.chargeValue(result);
      return result;
    };
    node.evaluate = wrapped;
  }
}

/**
 * Compiles CEL (never JavaScript: a definition is data and may come from an untrusted caller).
 * Expressions see `context`, `input` and `steps`, and must stay within {@link CelLimits}: at
 * compile time (length, nodes, depth, nesting) and on every evaluation (cost). `matches` runs on
 * RE2, in time linear in its input.
 */
export class CelCompiler {
  private readonly env: Environment;
  private readonly limits: CelLimits;

  /** Limits not given take their {@link DEFAULT_CEL_LIMITS} value. */
  constructor(limits: Partial<CelLimits> = {}) {
    this.limits = { ...DEFAULT_CEL_LIMITS, ...limits };
    this.env = new Environment({
      homogeneousAggregateLiterals: false,
      limits: { maxAstNodes: this.limits.maxAstNodes, maxDepth: this.limits.maxDepth },
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
    instrument(parsed.ast);
    // Only what the expression reads is converted for it: a condition on `context.total` must
    // not cost a copy of every step record, attempts included, at each evaluation.
    const ids = new Set<string>();
    collectIds(parsed.ast, ids);
    const readsContext = ids.has('context');
    const readsInput = ids.has('input');
    const stepRefs = [...refs];
    return {
      source,
      stepRefs,
      evaluate: (activation): unknown => {
        const outer = meter;
        const own = new CostMeter(this.limits.maxCost, source);
        meter = own;
        try {
          const result: unknown = parsed({
            context: readsContext ? toCel(activation.context) : UNREAD,
            input: readsInput ? toCel(activation.input) : UNREAD,
            steps: stepRefs.length > 0 ? stepsToCel(activation.steps, stepRefs) : UNREAD,
          });
          if (own.tripped) throw own.exceeded();
          return result;
        } catch (err) {
          // cel-js wraps what a node throws: report the budget, not whatever it became.
          if (own.tripped) throw own.exceeded();
          throw err;
        } finally {
          meter = outer;
        }
      },
    };
  }
}

function clip(text: string): string {
  return JSON.stringify(text.length <= 60 ? text : `${text.slice(0, 60)}…`);
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}
