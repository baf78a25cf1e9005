import { ManualClock, DEFAULT_MANUAL_CLOCK_START_MS } from './manual-clock';

describe('ManualClock', () => {
  it('starts at a fixed time and only moves when told', () => {
    const clock = new ManualClock();
    expect(clock.now()).toBe(DEFAULT_MANUAL_CLOCK_START_MS);
    expect(clock.advance(250)).toBe(DEFAULT_MANUAL_CLOCK_START_MS + 250);
    expect(clock.now()).toBe(DEFAULT_MANUAL_CLOCK_START_MS + 250);
    clock.set(10);
    expect(clock.now()).toBe(10);
  });

  it('refuses to advance backwards or by a non-number', () => {
    const clock = new ManualClock(0);
    expect(() => clock.advance(-1)).toThrow(RangeError);
    expect(() => clock.advance(Number.NaN)).toThrow(RangeError);
    expect(() => clock.set(Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(clock.now()).toBe(0);
  });
});
