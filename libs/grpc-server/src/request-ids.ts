import { isReservedName } from '@multiagents/contracts';

/** Longest id or name a request may carry (run, workflow, step, signal, topic, idempotency key). */
export const MAX_ID_LENGTH = 256;

/** Adds to `problems` what is wrong with a required id field: missing, too long or a reserved name. */
export function requireId(value: string, field: string, problems: string[]): void {
  if (value.length === 0) problems.push(`${field} is required`);
  else if (value.length > MAX_ID_LENGTH) problems.push(`${field} is longer than ${MAX_ID_LENGTH} characters`);
  // Ids and names become keys of plain objects somewhere (runs, steps, signals, definitions).
  else if (isReservedName(value)) problems.push(`${field} ${JSON.stringify(value)} is reserved`);
}

/** Whether `value` would pass {@link requireId}. */
export function isValidId(value: string): boolean {
  const problems: string[] = [];
  requireId(value, 'id', problems);
  return problems.length === 0;
}
