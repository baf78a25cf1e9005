/**
 * Freezes `value` and everything reachable from it, so a test fails (TypeError in strict mode)
 * the moment code under test mutates what it was given.
 */
export function deepFreeze<T>(value: T): T {
  const seen = new Set<object>();
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    seen.add(node);
    for (const key of Reflect.ownKeys(node)) visit((node as Record<PropertyKey, unknown>)[key]);
    Object.freeze(node);
  };
  visit(value);
  return value;
}
