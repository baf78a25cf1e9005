import { readFileSync } from 'node:fs';
import { UsageError } from './exit-codes';

/**
 * A JSON value given on the command line: inline (`'{"orderId":"o-1"}'`) or from a file
 * (`@order.json`, `@-` for stdin). Throws UsageError naming the flag.
 */
export function readJsonArgument(value: string, flag: string, readStdin: () => string): unknown {
  let text = value;
  let where = `${flag}`;
  if (value.startsWith('@')) {
    const path = value.slice(1);
    where = `${flag} ${value}`;
    try {
      text = path === '-' ? readStdin() : readFileSync(path, 'utf8');
    } catch (err) {
      throw new UsageError(`${where}: cannot read ${path}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${where}: not valid JSON (${(err as Error).message}); pass JSON or @file.json`);
  }
}

/** Like {@link readJsonArgument}, and the value must be a JSON object. */
export function readJsonObjectArgument(
  value: string,
  flag: string,
  readStdin: () => string,
): Record<string, unknown> {
  const parsed = readJsonArgument(value, flag, readStdin);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${flag}: must be a JSON object, like '{"orderId":"o-1"}'`);
  }
  return parsed as Record<string, unknown>;
}
