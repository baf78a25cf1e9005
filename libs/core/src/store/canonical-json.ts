/**
 * JSON with object keys sorted at every level and `undefined` members dropped: two values with
 * the same content give the same string whatever order their keys were written in. Every
 * definition store compares definitions with it, so all backends agree on "the same definition".
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, member: unknown) => {
    if (member === null || typeof member !== 'object' || Array.isArray(member)) return member;
    const source = member as Record<string, unknown>;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(source).sort()) sorted[key] = source[key];
    return sorted;
  });
}
