import { MAX_TIMER_MS } from '@multiagents/contracts';
import { booleanVariable, positiveIntegerVariable, timerDelayVariable } from './environment';

describe('environment variables', () => {
  it('reads true/false words, falls back when unset, and gives undefined for anything else', () => {
    expect(booleanVariable({ A: ' Yes ' }, 'A', false)).toBe(true);
    expect(booleanVariable({ A: 'OFF' }, 'A', true)).toBe(false);
    expect(booleanVariable({ A: '' }, 'A', true)).toBe(true);
    expect(booleanVariable({}, 'A', false)).toBe(false);
    expect(booleanVariable({ A: 'maybe' }, 'A', true)).toBeUndefined();
  });

  it('reads positive integers and reports every other value with its name', () => {
    const problems: string[] = [];
    const report = (problem: string): number => problems.push(problem);
    expect(positiveIntegerVariable({ N: '250' }, 'N', report)).toBe(250);
    expect(positiveIntegerVariable({ N: '' }, 'N', report)).toBeUndefined();
    expect(positiveIntegerVariable({}, 'N', report)).toBeUndefined();
    expect(problems).toEqual([]);
    for (const raw of ['0', '-3', '1.5', 'ten', '1e300']) {
      expect(positiveIntegerVariable({ N: raw }, 'N', report)).toBeUndefined();
    }
    expect(problems).toEqual(
      ['0', '-3', '1.5', 'ten', '1e300'].map((raw) => `N=${raw}: must be a positive integer`),
    );
  });

  it('reads a timer delay up to what a timer can wait, and refuses a longer one (it would fire at once)', () => {
    const problems: string[] = [];
    const report = (problem: string): number => problems.push(problem);
    expect(timerDelayVariable({ T: String(MAX_TIMER_MS) }, 'T', report)).toBe(MAX_TIMER_MS);
    expect(timerDelayVariable({}, 'T', report)).toBeUndefined();
    expect(problems).toEqual([]);
    expect(timerDelayVariable({ T: '3000000000' }, 'T', report)).toBeUndefined();
    expect(timerDelayVariable({ T: '0' }, 'T', report)).toBeUndefined();
    expect(problems).toEqual([
      `T=3000000000: must be at most ${MAX_TIMER_MS} (what a timer can wait, about 24.8 days)`,
      'T=0: must be a positive integer',
    ]);
  });
});
