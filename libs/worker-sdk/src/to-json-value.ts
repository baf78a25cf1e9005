import {
  checkJsonBounds,
  copyJsonData,
  DEFAULT_MAX_JSON_DEPTH,
  MAX_ENVELOPE_BYTES,
  type JsonBounds,
} from '@multiagents/contracts';

/**
 * Bounds of what a worker may return: deep enough for any real document, and small enough that
 * the result envelope always fits the bus's limit (half of it, leaving room for the rest).
 */
export const DEFAULT_OUTPUT_BOUNDS: Pick<JsonBounds, 'maxBytes' | 'maxDepth'> = Object.freeze({
  maxBytes: MAX_ENVELOPE_BYTES / 2,
  maxDepth: DEFAULT_MAX_JSON_DEPTH,
});

/** The result of {@link toJsonValue}. */
export type JsonConversion =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string };

/**
 * Turns a value into exactly the JSON data the other side of the bus will see (a Date becomes a
 * string, `undefined` fields disappear, a returned `undefined` becomes `null`), or says why it
 * cannot (a BigInt, a cycle, a function, a throwing `toJSON`, more than `bounds` allow). Done before publishing so every
 * backend, the in-process one included, hands the orchestrator the same data, and so a bad value
 * is reported as the worker's failure instead of crashing the consumer.
 */
export function toJsonValue(
  value: unknown,
  bounds: Pick<JsonBounds, 'maxBytes' | 'maxDepth'> = DEFAULT_OUTPUT_BOUNDS,
): JsonConversion {
  if (value === undefined) return { ok: true, value: null };
  // Plain data (what workers return) is copied as is; the rest takes the text round trip.
  let json = copyJsonData(value, bounds.maxDepth);
  if (json === undefined) {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      return { ok: false, reason: err instanceof Error ? err.message : String(err) };
    }
    if (text === undefined) return { ok: false, reason: `a ${typeof value} is not JSON data` };
    json = JSON.parse(text) as unknown;
  }
  // Bounded here, where it is made: an output too deep or too large for a store or the bus would
  // otherwise be accepted now and fail to encode later, again and again.
  try {
    // Not `{ ...bounds, what }`: a key added after a spread leaves V8's fast path (1.2 µs a step).
    checkJsonBounds(json, { maxBytes: bounds.maxBytes, maxDepth: bounds.maxDepth, what: 'output' });
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
  return { ok: true, value: json };
}
