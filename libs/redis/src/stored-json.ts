/**
 * A JSON object read back from a Redis value, or undefined when the text is not JSON or not an
 * object: anyone who can write to Redis can write there, so what comes back is checked before use.
 */
export function parseStoredObject(json: string): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  return isObject(value) ? value : undefined;
}

/** A plain object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
