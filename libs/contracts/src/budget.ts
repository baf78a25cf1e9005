import { ValidationError } from './errors';

/** What one model costs, in US dollars per million tokens. */
export interface ModelPrice {
  readonly inputUsdPerMTok: number;
  readonly outputUsdPerMTok: number;
}

/** Prices by model name, as the provider reports the model (configuration, not code). */
export type PriceTable = Readonly<Record<string, ModelPrice>>;

/** Token counts of one or more model calls. */
export interface TokenCounts {
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/**
 * A spending limit for a run (or one agent attempt). An absent limit is no limit; a set one must be
 * a finite number above zero (`maxTokens` a whole number).
 */
export interface Budget {
  readonly maxTokens?: number;
  readonly maxCostUsd?: number;
}

/** Amounts counted against a {@link Budget}. */
export interface Spend {
  readonly tokens: number;
  readonly costUsd: number;
}

/** The answer of {@link checkBudget}. */
export interface BudgetCheck {
  /** True when `spent + reserved` goes past a limit: do not dispatch. */
  readonly exceeded: boolean;
  /** One line per limit passed, for the `BUDGET_EXCEEDED` error message; empty when not exceeded. */
  readonly reasons: readonly string[];
  /** `spent + reserved`: what the run would have used once the reserved work is done. */
  readonly projected: Spend;
  /** What is left of each limit after `spent + reserved` (negative when exceeded); absent: no limit. */
  readonly remaining: { readonly tokens?: number; readonly costUsd?: number };
}

const ONE_MILLION = 1_000_000;

/**
 * The cost in USD of `usage` at `price`. Pure; the result is not rounded (round only for display).
 *
 * @example
 * costUsd({ promptTokens: 1_200, completionTokens: 300 }, { inputUsdPerMTok: 2.5, outputUsdPerMTok: 10 }); // 0.006
 */
export function costUsd(usage: TokenCounts, price: ModelPrice): number {
  return (
    (usage.promptTokens * price.inputUsdPerMTok + usage.completionTokens * price.outputUsdPerMTok) /
    ONE_MILLION
  );
}

/**
 * The cost of `usage` on `model` from `prices`, or `null` when the table has no price for it (the
 * cost is unknown: callers counting spend treat it as 0, so a `maxCostUsd` limit cannot see it;
 * set `maxTokens` too). Own properties only: a model named `constructor` has no price.
 */
export function costForModel(
  prices: PriceTable | undefined,
  model: string,
  usage: TokenCounts,
): number | null {
  if (prices === undefined || !Object.hasOwn(prices, model)) return null;
  const price = prices[model];
  return price === undefined ? null : costUsd(usage, price);
}

/** Every problem with a budget (empty when valid), for definition and option validation. */
export function validateBudget(budget: unknown, label = 'budget'): string[] {
  if (typeof budget !== 'object' || budget === null || Array.isArray(budget)) {
    return [`${label} must be an object with maxTokens and/or maxCostUsd`];
  }
  const problems: string[] = [];
  for (const key of Object.keys(budget)) {
    if (key !== 'maxTokens' && key !== 'maxCostUsd') problems.push(`${label}: unknown field "${key}"`);
  }
  const { maxTokens, maxCostUsd } = budget as Record<string, unknown>;
  if (maxTokens !== undefined && !(Number.isSafeInteger(maxTokens) && (maxTokens as number) > 0)) {
    problems.push(`${label}.maxTokens must be a positive integer`);
  }
  if (
    maxCostUsd !== undefined &&
    !(typeof maxCostUsd === 'number' && Number.isFinite(maxCostUsd) && maxCostUsd > 0)
  ) {
    problems.push(`${label}.maxCostUsd must be a finite number above 0`);
  }
  return problems;
}

/** Every problem with a price table (empty when valid). */
export function validatePriceTable(prices: unknown, label = 'prices'): string[] {
  if (typeof prices !== 'object' || prices === null || Array.isArray(prices)) {
    return [`${label} must be an object of model name → { inputUsdPerMTok, outputUsdPerMTok }`];
  }
  const problems: string[] = [];
  for (const [model, price] of Object.entries(prices)) {
    const at = `${label}[${JSON.stringify(model)}]`;
    if (typeof price !== 'object' || price === null) {
      problems.push(`${at} must be { inputUsdPerMTok, outputUsdPerMTok }`);
      continue;
    }
    for (const key of ['inputUsdPerMTok', 'outputUsdPerMTok'] as const) {
      const value = (price as Record<string, unknown>)[key];
      if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) {
        problems.push(`${at}.${key} must be a finite number ≥ 0`);
      }
    }
  }
  return problems;
}

function checkSpend(spend: Spend, label: string, problems: string[]): void {
  if (!(typeof spend.tokens === 'number' && Number.isFinite(spend.tokens) && spend.tokens >= 0)) {
    problems.push(`${label}.tokens must be a finite number ≥ 0`);
  }
  if (!(typeof spend.costUsd === 'number' && Number.isFinite(spend.costUsd) && spend.costUsd >= 0)) {
    problems.push(`${label}.costUsd must be a finite number ≥ 0`);
  }
}

/**
 * Would the run go over `budget` if the work in `reserved` were done on top of what is `spent`?
 * Pure. `reserved` must include the step about to be dispatched and every agent step already in
 * flight (parallel branches), each at its estimate, at least 1 token: a step reserved at 0 would
 * pass a budget that is already used up. Reaching a limit exactly is allowed; going past it is not.
 * Throws a ValidationError for a malformed budget or negative amounts (a bug in the caller).
 *
 * @example
 * const check = checkBudget({ maxTokens: 10_000 }, { tokens: 9_500, costUsd: 0.02 }, { tokens: 800, costUsd: 0 });
 * if (check.exceeded) fail(new NonRetryableError(check.reasons.join('; '), { code: ErrorCode.BudgetExceeded }));
 */
export function checkBudget(
  budget: Budget,
  spent: Spend,
  reserved: Spend = { tokens: 0, costUsd: 0 },
): BudgetCheck {
  const problems = validateBudget(budget);
  checkSpend(spent, 'spent', problems);
  checkSpend(reserved, 'reserved', problems);
  if (problems.length > 0) throw new ValidationError('cannot check budget', problems);

  const projected: Spend = {
    tokens: spent.tokens + reserved.tokens,
    costUsd: spent.costUsd + reserved.costUsd,
  };
  const reasons: string[] = [];
  const remaining: { tokens?: number; costUsd?: number } = {};
  if (budget.maxTokens !== undefined) {
    remaining.tokens = budget.maxTokens - projected.tokens;
    if (projected.tokens > budget.maxTokens) {
      reasons.push(
        `tokens: ${spent.tokens} used + ${reserved.tokens} reserved > ${budget.maxTokens} allowed`,
      );
    }
  }
  if (budget.maxCostUsd !== undefined) {
    remaining.costUsd = budget.maxCostUsd - projected.costUsd;
    if (projected.costUsd > budget.maxCostUsd) {
      reasons.push(
        `cost: $${formatUsd(spent.costUsd)} used + $${formatUsd(reserved.costUsd)} reserved > $${formatUsd(budget.maxCostUsd)} allowed`,
      );
    }
  }
  return { exceeded: reasons.length > 0, reasons, projected, remaining };
}

/** Enough digits for token-priced amounts (a token can cost a millionth of a dollar). */
function formatUsd(value: number): string {
  return Number(value.toPrecision(6)).toString();
}
