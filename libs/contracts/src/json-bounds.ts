import { ResourceExhaustedError, ValidationError } from './errors';

/** Limits of a JSON value that enters from outside (start input, signal payload, worker output…). */
export interface JsonBounds {
  /** Largest UTF-8 JSON encoding accepted, in bytes. */
  readonly maxBytes: number;
  /** Deepest nesting of arrays and objects accepted (a scalar is depth 0, `{}` and `[]` are 1). */
  readonly maxDepth: number;
  /** Names the value in error messages (`input`, `signal payload`…). */
  readonly what?: string;
}

/** The bound on nesting unless a caller sets another: deep enough for any real document. */
export const DEFAULT_MAX_JSON_DEPTH = 64;

/** The bound on size unless a caller sets another (the start input limit). */
export const DEFAULT_MAX_JSON_BYTES = 256 * 1024;

/** Bounds used unless a caller sets others. */
export const DEFAULT_JSON_BOUNDS: JsonBounds = Object.freeze({
  maxBytes: DEFAULT_MAX_JSON_BYTES,
  maxDepth: DEFAULT_MAX_JSON_DEPTH,
});

/** Keys refused anywhere in a value: they rewrite prototypes when a value is merged with `Object.assign`. */
const FORBIDDEN_KEYS = new Set(['__proto__']);

/** Beyond this, even a well-formed value cannot be checked (or encoded) in reasonable time. */
const MAX_JSON_DEPTH_LIMIT = 10_000;

/** A value still to visit, with its nesting depth. */
interface Frame {
  readonly value: unknown;
  readonly depth: number;
}

/**
 * Checks that `value` is plain JSON data (null, booleans, finite numbers, strings, arrays and plain
 * objects, no cycles, no `__proto__` key) within `maxDepth` levels and `maxBytes` bytes of UTF-8
 * JSON, so that everything accepted can be stored, encoded and decoded later by every backend.
 * Iterative (a hostile value cannot overflow the stack) and stops at the first bound crossed, so
 * it costs at most about `maxBytes` work whatever it is given. Throws ValidationError
 * (INVALID_ARGUMENT: not JSON, too deep) or ResourceExhaustedError (RESOURCE_EXHAUSTED: too large).
 * Returns the size in bytes.
 *
 * @example
 * checkJsonBounds(input, { maxBytes: 256 * 1024, maxDepth: 64, what: 'input' });
 */
export function checkJsonBounds(value: unknown, bounds: JsonBounds = DEFAULT_JSON_BOUNDS): number {
  const what = bounds.what ?? 'value';
  const maxDepth = Math.min(bounds.maxDepth, MAX_JSON_DEPTH_LIMIT);
  let bytes = 0;
  const tooLarge = (): ResourceExhaustedError =>
    new ResourceExhaustedError(`${what} is larger than the ${bounds.maxBytes}-byte limit`, {
      what,
      maxBytes: bounds.maxBytes,
    });
  const invalid = (problem: string): ValidationError => new ValidationError(`invalid ${what}`, [problem]);
  const stack: Frame[] = [{ value, depth: 0 }];
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop() as Frame;
    switch (typeof current) {
      case 'string':
        bytes += jsonStringBytes(current);
        break;
      case 'number':
        if (!Number.isFinite(current))
          throw invalid(`${what} holds ${String(current)}, which JSON cannot carry`);
        bytes += String(current).length;
        break;
      case 'boolean':
        bytes += current ? 4 : 5;
        break;
      case 'object': {
        if (current === null) {
          bytes += 4;
          break;
        }
        if (depth + 1 > maxDepth) {
          throw invalid(`${what} is nested more than ${maxDepth} levels deep`);
        }
        if (Array.isArray(current)) {
          bytes += 2 + Math.max(0, current.length - 1);
          if (bytes > bounds.maxBytes) throw tooLarge();
          for (let i = current.length - 1; i >= 0; i--) {
            const item: unknown = current[i];
            if (item === undefined || typeof item === 'function' || typeof item === 'symbol') {
              throw invalid(`${what} holds ${typeof item} in a list, which JSON cannot carry`);
            }
            stack.push({ value: item, depth: depth + 1 });
          }
          break;
        }
        // Plain: no prototype, or a root one (Object.prototype of this realm or another: Jest's
        // sandbox and structuredClone hand out objects of the outer realm).
        const proto: unknown = Object.getPrototypeOf(current);
        if (proto !== null && Object.getPrototypeOf(proto) !== null) {
          throw invalid(`${what} holds an object that is not plain JSON data`);
        }
        let members = 0;
        for (const key of Object.keys(current)) {
          if (FORBIDDEN_KEYS.has(key)) throw invalid(`${what} holds the key "${key}", which is not allowed`);
          const item: unknown = (current as Record<string, unknown>)[key];
          // JSON.stringify drops undefined members; so do we.
          if (item === undefined) continue;
          if (typeof item === 'function' || typeof item === 'symbol' || typeof item === 'bigint') {
            throw invalid(`${what} holds a ${typeof item}, which JSON cannot carry`);
          }
          // `"key":` plus a `,` before every member but the first.
          bytes += jsonStringBytes(key) + 1 + (members++ > 0 ? 1 : 0);
          if (bytes > bounds.maxBytes) throw tooLarge();
          stack.push({ value: item, depth: depth + 1 });
        }
        bytes += 2;
        break;
      }
      default:
        throw invalid(`${what} holds a ${typeof current}, which JSON cannot carry`);
    }
    if (bytes > bounds.maxBytes) throw tooLarge();
    // A cycle keeps pushing frames: the depth bound above stops it, as does the size bound.
  }
  return bytes;
}

/**
 * Parses UTF-8 JSON text that came from outside, then checks it with {@link checkJsonBounds}: the
 * size before parsing (nothing larger is even read), the depth and shape after (V8's JSON.parse is
 * iterative, so a deep document parses but is refused here before anything recurses into it).
 */
export function parseBoundedJson(
  text: string | Uint8Array,
  bounds: JsonBounds = DEFAULT_JSON_BOUNDS,
): unknown {
  const what = bounds.what ?? 'value';
  const length = typeof text === 'string' ? Buffer.byteLength(text, 'utf8') : text.byteLength;
  if (length > bounds.maxBytes) {
    throw new ResourceExhaustedError(
      `${what} is ${length} bytes, more than the ${bounds.maxBytes}-byte limit`,
      {
        what,
        bytes: length,
        maxBytes: bounds.maxBytes,
      },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof text === 'string' ? text : utf8Decoder.decode(text));
  } catch (err) {
    throw new ValidationError(`invalid ${what}`, [
      `${what} is not valid UTF-8 JSON: ${err instanceof Error ? err.message : String(err)}`,
    ]);
  }
  // Its own encoding can be longer than the text (`1e5` is stored as `100000`): checked too.
  checkJsonBounds(parsed, bounds);
  return parsed;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Bytes of `JSON.stringify(text)` in UTF-8, without building it. */
function jsonStringBytes(text: string): number {
  let bytes = 2;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x22 || code === 0x5c) bytes += 2;
    else if (code < 0x20)
      bytes += code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
    else if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 6; // a lone surrogate is escaped as \udXXX
    } else if (code >= 0xdc00 && code <= 0xdfff) bytes += 6;
    else bytes += 3;
  }
  return bytes;
}
