import { drainDeadlineMs } from './multiagents-client';

describe('the deadline of a Drain call', () => {
  it('covers the drain timeout asked for, and room for the answer', () => {
    expect(drainDeadlineMs(120_000, 10_000)).toBe(130_000);
    expect(drainDeadlineMs(0, 10_000)).toBe(10_000);
  });

  it("covers the longest drain a server accepts when none is asked for (the manager's own is unknown here)", () => {
    // A manager configured with MULTIAGENTS_DRAIN_TIMEOUT_MS=120000: not cut at 40 s.
    expect(drainDeadlineMs(undefined, 10_000)).toBeGreaterThan(120_000 + 5_000);
    expect(drainDeadlineMs(undefined, 10_000)).toBe(3_600_000 + 10_000);
  });
});
