import { MAX_TIMER_MS } from '@multiagents/contracts';

/**
 * An environment as an app passes it to a parser (its own variables): libraries never read the
 * process's environment themselves; apps' config modules hand it to the parsers libraries export.
 */
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * A true/false variable (`true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, any case, spaces
 * around ignored): `fallback` when unset or empty, undefined when it is neither (the caller
 * reports it with its other problems).
 */
export function booleanVariable(env: Environment, name: string, fallback: boolean): boolean | undefined {
  const text = env[name]?.trim().toLowerCase();
  if (text === undefined || text === '') return fallback;
  if (['true', '1', 'yes', 'on'].includes(text)) return true;
  if (['false', '0', 'no', 'off'].includes(text)) return false;
  return undefined;
}

/**
 * A positive integer variable (a count or a duration in milliseconds): undefined when unset or
 * empty, and when it is not a positive safe integer (then `report` gets the problem, to list with
 * the caller's others).
 */
export function positiveIntegerVariable(
  env: Environment,
  name: string,
  report: (problem: string) => void,
): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) {
    report(`${name}=${raw}: must be a positive integer`);
    return undefined;
  }
  return value;
}

/**
 * A duration in ms that a timer waits (a timeout, an interval): a positive integer up to
 * {@link MAX_TIMER_MS}, beyond which a Node timer fires at once. Undefined when unset.
 */
export function timerDelayVariable(
  env: Environment,
  name: string,
  report: (problem: string) => void,
): number | undefined {
  const value = positiveIntegerVariable(env, name, report);
  if (value !== undefined && value > MAX_TIMER_MS) {
    report(`${name}=${env[name]}: must be at most ${MAX_TIMER_MS} (what a timer can wait, about 24.8 days)`);
    return undefined;
  }
  return value;
}
