import { Ajv, type ValidateFunction } from 'ajv';
import { RE2JS } from 're2js';

/** Largest input schema accepted, as JSON bytes. */
export const MAX_INPUT_SCHEMA_BYTES = 64 * 1024;

/** A compiled input schema: every problem with an input, or none. */
export interface InputSchemaCheck {
  (input: unknown): string[];
}

/** `pattern` and `patternProperties` run on RE2: linear time whatever the pattern and the input. */
function re2(pattern: string, flags: string): { test: (s: string) => boolean } {
  const regex = RE2JS.compile(pattern, flags.includes('i') ? RE2JS.CASE_INSENSITIVE : 0);
  return { test: (s: string) => regex.matcher(s).find() };
}
re2.code = 're2';

/**
 * Compiles a definition's `inputSchema` (JSON Schema, draft-07 as Ajv takes it). Throws with
 * Ajv's explanation when the schema is invalid. Schemas come from whoever registers a
 * definition: `$ref`s to other documents are not resolved (nothing is fetched), and patterns run
 * on RE2, so no schema can make validation slow.
 */
export function compileInputSchema(schema: Record<string, unknown>): InputSchemaCheck {
  let validate: ValidateFunction;
  try {
    // One Ajv per schema: schemas of different definitions never meet (an `$id` used twice is
    // not a conflict). allErrors: a bad input is reported whole; strict: a schema with an unknown
    // keyword or a typo is refused at registration instead of silently accepting everything.
    validate = new Ajv({ allErrors: true, strict: true, code: { regExp: re2 } }).compile(schema);
  } catch (err) {
    throw new Error(`inputSchema is not a valid JSON Schema: ${(err as Error).message}`, { cause: err });
  }
  return (input: unknown): string[] => {
    if (validate(input)) return [];
    return (validate.errors ?? []).map((e) => {
      const where = e.instancePath === '' ? 'input' : `input${e.instancePath.replaceAll('/', '.')}`;
      const extra =
        e.keyword === 'additionalProperties'
          ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})`
          : '';
      return `${where} ${e.message ?? 'is invalid'}${extra}`;
    });
  };
}
