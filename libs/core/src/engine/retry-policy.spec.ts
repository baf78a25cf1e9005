import { backoffDelayMs, DEFAULT_RETRY_POLICY, resolveRetryPolicy } from './retry-policy';

describe('retry policy', () => {
  it('layers the step policy over the workflow defaults over the built-in defaults', () => {
    expect(
      resolveRetryPolicy(DEFAULT_RETRY_POLICY, { maxAttempts: 7, initialDelayMs: 5 }, { initialDelayMs: 9 }),
    ).toEqual({
      ...DEFAULT_RETRY_POLICY,
      maxAttempts: 7,
      initialDelayMs: 9,
    });
    expect(resolveRetryPolicy(DEFAULT_RETRY_POLICY, undefined, undefined)).toEqual(DEFAULT_RETRY_POLICY);
  });

  it('treats a field set to undefined as not set', () => {
    expect(
      resolveRetryPolicy(DEFAULT_RETRY_POLICY, { maxAttempts: 2, backoffCoefficient: undefined }),
    ).toEqual({
      ...DEFAULT_RETRY_POLICY,
      maxAttempts: 2,
    });
  });

  it('grows delays exponentially from the first failed attempt and caps them', () => {
    const policy = { ...DEFAULT_RETRY_POLICY, initialDelayMs: 100, backoffCoefficient: 2, maxDelayMs: 500 };
    expect([1, 2, 3, 4, 5].map((n) => backoffDelayMs(policy, n))).toEqual([100, 200, 400, 500, 500]);
    expect(backoffDelayMs({ ...policy, backoffCoefficient: 1 }, 10)).toBe(100);
    expect(backoffDelayMs({ ...policy, initialDelayMs: 0 }, 3)).toBe(0);
  });
});
