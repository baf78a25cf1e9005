/** The result of {@link toJsonValue}. */
export type JsonConversion =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string };

/**
 * Turns a value into exactly the JSON data the other side of the bus will see (a Date becomes a
 * string, `undefined` fields disappear, a returned `undefined` becomes `null`), or says why it
 * cannot (a BigInt, a cycle, a function, a throwing `toJSON`). Done before publishing so every
 * backend, the in-process one included, hands the orchestrator the same data, and so a bad value
 * is reported as the worker's failure instead of crashing the consumer.
 */
export function toJsonValue(value: unknown): JsonConversion {
  if (value === undefined) return { ok: true, value: null };
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
  if (text === undefined) return { ok: false, reason: `a ${typeof value} is not JSON data` };
  return { ok: true, value: JSON.parse(text) as unknown };
}
