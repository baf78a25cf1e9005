/** What {@link truncateAnswer} returns. */
export interface TruncatedAnswer {
  readonly answer: Record<string, unknown>;
  readonly truncated: boolean;
  /** Top-level fields that were cut, in the order they were first cut. */
  readonly truncatedFields: readonly string[];
}

/** A string or array somewhere inside the answer, and how to shrink it. */
interface Leaf {
  readonly kind: 'string' | 'array';
  /** The top-level answer field it is in. */
  readonly field: string;
  readonly bytes: number;
  shrink(excessBytes: number): void;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');
}

/** `text` cut to at most `maxBytes` of UTF-8, never inside a character. */
function cutUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  // Back up to the first byte of a character (continuation bytes are 10xxxxxx).
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

function collectLeaves(
  container: Record<string, unknown> | unknown[],
  field: string | undefined,
  out: Leaf[],
): void {
  const entries: [string | number, unknown][] = Array.isArray(container)
    ? container.map((v, i) => [i, v])
    : Object.entries(container);
  for (const [key, value] of entries) {
    const top = field ?? String(key);
    if (typeof value === 'string' && value.length > 0) {
      out.push({
        kind: 'string',
        field: top,
        bytes: jsonBytes(value),
        // Removing n bytes of UTF-8 removes at least n bytes of JSON (escapes only add bytes).
        shrink: (excess) => {
          const current = (container as Record<string | number, string>)[key] ?? '';
          (container as Record<string | number, unknown>)[key] = cutUtf8(
            current,
            Buffer.byteLength(current, 'utf8') - excess,
          );
        },
      });
    } else if (Array.isArray(value)) {
      if (value.length > 0) {
        out.push({
          kind: 'array',
          field: top,
          bytes: jsonBytes(value),
          shrink: () => void value.splice(Math.floor(value.length / 2)),
        });
      }
      collectLeaves(value, top, out);
    } else if (typeof value === 'object' && value !== null) {
      collectLeaves(value as Record<string, unknown>, top, out);
    }
  }
}

/**
 * Cuts an answer (JSON data) until its JSON is at most `maxBytes` of UTF-8: the longest strings
 * first, at a character boundary, then (when no text is left to cut) the largest arrays. Types
 * stay as the signature declared them, so a truncated answer is still a valid one. Pure: the
 * input is not modified.
 *
 * @example
 * truncateAnswer({ answer: 'x'.repeat(100_000) }, 65_536); // { answer: { answer: 'xxx…' }, truncated: true, truncatedFields: ['answer'] }
 */
export function truncateAnswer(answer: Readonly<Record<string, unknown>>, maxBytes: number): TruncatedAnswer {
  if (jsonBytes(answer) <= maxBytes) return { answer: { ...answer }, truncated: false, truncatedFields: [] };
  const copy = JSON.parse(JSON.stringify(answer)) as Record<string, unknown>;
  const truncatedFields: string[] = [];
  // Each round removes at least one byte or one array item, so this ends; the cap is a safety net.
  for (let round = 0; round < 10_000; round++) {
    const excess = jsonBytes(copy) - maxBytes;
    if (excess <= 0) break;
    const leaves: Leaf[] = [];
    collectLeaves(copy, undefined, leaves);
    const largest = (kind: Leaf['kind']): Leaf | undefined =>
      leaves.filter((l) => l.kind === kind).sort((a, b) => b.bytes - a.bytes)[0];
    // Text first (the usual culprit); drop array items (halving) only when no text is left.
    const target = largest('string') ?? largest('array');
    if (target === undefined) {
      // Nothing left to cut (numbers, booleans): empty the largest field outright.
      const [biggest] = Object.keys(copy).sort((a, b) => jsonBytes(copy[b]) - jsonBytes(copy[a]));
      if (biggest === undefined || copy[biggest] === null) break;
      copy[biggest] = null;
      if (!truncatedFields.includes(biggest)) truncatedFields.push(biggest);
      continue;
    }
    target.shrink(excess);
    if (!truncatedFields.includes(target.field)) truncatedFields.push(target.field);
  }
  return { answer: copy, truncated: true, truncatedFields };
}
