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

/** allErrors: a bad input is reported whole; strict: a schema with an unknown keyword or a typo is refused. */
function newAjv(): Ajv {
  return new Ajv({ allErrors: true, strict: true, addUsedSchema: false, code: { regExp: re2 } });
}

/**
 * The Ajv the input schemas without any `$id` are compiled with. A fresh instance per schema
 * compiled Ajv's own meta-schema again each time (30-60 ms per definition, on the first start or
 * result of a workflow in every process); shared, a schema compiles in about a millisecond. A
 * schema without an `$id` can neither be `$ref`d by another nor clash with one, and it leaves the
 * instance's cache once compiled. A schema with an `$id` anywhere gets an instance of its own, as
 * before.
 */
let shared: Ajv | undefined;

/**
 * Compiles a definition's `inputSchema` (JSON Schema, draft-07 as Ajv takes it). Throws with
 * Ajv's explanation when the schema is invalid, at registration instead of silently accepting
 * everything. Schemas come from whoever registers a definition: `$ref`s to other documents are
 * not resolved (nothing is fetched), and patterns run on RE2, so no schema can make validation
 * slow.
 */
export function compileInputSchema(schema: Record<string, unknown>): InputSchemaCheck {
  // Ajv keeps a note of every absolute `$id`, nested ones too: such a schema gets its own.
  const ajv = JSON.stringify(schema).includes('"$id"') ? newAjv() : (shared ??= newAjv());
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema);
  } catch (err) {
    throw new Error(`inputSchema is not a valid JSON Schema: ${(err as Error).message}`, { cause: err });
  } finally {
    if (ajv === shared) ajv.removeSchema(schema);
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
