/**
 * Freezes a JSON-like value and everything in it, and returns it: a value many holders share (a
 * cached definition, a message handed to several consumer groups) cannot be changed by any of
 * them. Children are frozen first, so an object found frozen is taken as frozen all the way down
 * and skipped.
 *
 * @example
 * const definition = deepFreeze(JSON.parse(json) as WorkflowDefinition);
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  if (Array.isArray(value)) {
    for (const item of value) deepFreeze(item);
  } else {
    for (const key in value) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return Object.freeze(value);
}
