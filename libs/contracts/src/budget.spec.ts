import fc from 'fast-check';
import { checkBudget, costForModel, costUsd, validateBudget, validatePriceTable } from './budget';
import { ErrorCode, ValidationError } from './errors';

describe('costUsd', () => {
  it('prices prompt and completion tokens separately, per million', () => {
    expect(
      costUsd({ promptTokens: 1_200, completionTokens: 300 }, { inputUsdPerMTok: 2.5, outputUsdPerMTok: 10 }),
    ).toBeCloseTo(0.006, 12);
    expect(
      costUsd({ promptTokens: 1_000_000, completionTokens: 0 }, { inputUsdPerMTok: 3, outputUsdPerMTok: 15 }),
    ).toBe(3);
    expect(
      costUsd({ promptTokens: 0, completionTokens: 1_000_000 }, { inputUsdPerMTok: 3, outputUsdPerMTok: 15 }),
    ).toBe(15);
  });
});

describe('costForModel', () => {
  const prices = { 'gpt-x': { inputUsdPerMTok: 1, outputUsdPerMTok: 2 } };

  it('looks the model up in the table', () => {
    expect(costForModel(prices, 'gpt-x', { promptTokens: 500_000, completionTokens: 500_000 })).toBe(1.5);
  });

  it('says null (unknown) for a model without a price, inherited names included', () => {
    expect(costForModel(prices, 'other', { promptTokens: 1, completionTokens: 1 })).toBeNull();
    expect(costForModel(prices, 'constructor', { promptTokens: 1, completionTokens: 1 })).toBeNull();
    expect(costForModel(undefined, 'gpt-x', { promptTokens: 1, completionTokens: 1 })).toBeNull();
  });
});

describe('checkBudget', () => {
  it('passes while spent plus reserved stays within every limit', () => {
    const check = checkBudget(
      { maxTokens: 1_000, maxCostUsd: 1 },
      { tokens: 600, costUsd: 0.5 },
      { tokens: 400, costUsd: 0.5 },
    );
    expect(check).toEqual({
      exceeded: false,
      reasons: [],
      projected: { tokens: 1_000, costUsd: 1 },
      remaining: { tokens: 0, costUsd: 0 },
    });
  });

  it('fails when the reservation (work in flight plus the next step) would pass the token limit', () => {
    const check = checkBudget({ maxTokens: 1_000 }, { tokens: 600, costUsd: 0 }, { tokens: 401, costUsd: 0 });
    expect(check.exceeded).toBe(true);
    expect(check.remaining).toEqual({ tokens: -1 });
    expect(check.reasons).toEqual(['tokens: 600 used + 401 reserved > 1000 allowed']);
  });

  it('fails on cost alone, naming the amounts', () => {
    const check = checkBudget(
      { maxTokens: 1_000_000, maxCostUsd: 0.01 },
      { tokens: 10, costUsd: 0.009 },
      { tokens: 10, costUsd: 0.002 },
    );
    expect(check.exceeded).toBe(true);
    expect(check.reasons).toEqual(['cost: $0.009 used + $0.002 reserved > $0.01 allowed']);
  });

  it('treats a used-up budget as exceeded as soon as the next step reserves anything', () => {
    expect(checkBudget({ maxTokens: 100 }, { tokens: 100, costUsd: 0 }).exceeded).toBe(false);
    expect(
      checkBudget({ maxTokens: 100 }, { tokens: 100, costUsd: 0 }, { tokens: 1, costUsd: 0 }).exceeded,
    ).toBe(true);
  });

  it('has no limit for an absent field', () => {
    const check = checkBudget({}, { tokens: 1e12, costUsd: 1e9 }, { tokens: 1, costUsd: 1 });
    expect(check.exceeded).toBe(false);
    expect(check.remaining).toEqual({});
  });

  it('refuses a malformed budget or negative amounts with every problem listed', () => {
    let thrown: unknown;
    try {
      checkBudget({ maxTokens: -1, maxCostUsd: Number.NaN }, { tokens: -5, costUsd: 0 });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as ValidationError).problems).toEqual([
      'budget.maxTokens must be a positive integer',
      'budget.maxCostUsd must be a finite number above 0',
      'spent.tokens must be a finite number ≥ 0',
    ]);
  });

  it('is monotonic: spending more never turns an exceeded budget back into a passing one', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 0, max: 2_000_000 }),
        fc.integer({ min: 0, max: 2_000_000 }),
        fc.integer({ min: 0, max: 1_000 }),
        (maxTokens, spent, reserved, extra) => {
          const before = checkBudget(
            { maxTokens },
            { tokens: spent, costUsd: 0 },
            { tokens: reserved, costUsd: 0 },
          );
          const after = checkBudget(
            { maxTokens },
            { tokens: spent + extra, costUsd: 0 },
            { tokens: reserved, costUsd: 0 },
          );
          expect(before.exceeded).toBe(spent + reserved > maxTokens);
          if (before.exceeded) expect(after.exceeded).toBe(true);
        },
      ),
    );
  });
});

describe('validateBudget and validatePriceTable', () => {
  it('accept good values', () => {
    expect(validateBudget({ maxTokens: 5, maxCostUsd: 0.5 })).toEqual([]);
    expect(validatePriceTable({ m: { inputUsdPerMTok: 0, outputUsdPerMTok: 1.25 } })).toEqual([]);
  });

  it('list every problem, misspelt fields included', () => {
    expect(validateBudget({ maxToken: 5 })).toEqual(['budget: unknown field "maxToken"']);
    expect(validateBudget(null)).toHaveLength(1);
    expect(validatePriceTable({ m: { inputUsdPerMTok: -1 } })).toEqual([
      'prices["m"].inputUsdPerMTok must be a finite number ≥ 0',
      'prices["m"].outputUsdPerMTok must be a finite number ≥ 0',
    ]);
  });
});

it('BUDGET_EXCEEDED is a stable error code', () => {
  expect(ErrorCode.BudgetExceeded).toBe('BUDGET_EXCEEDED');
});
