import { AxSignature, type AxField } from '@ax-llm/ax';
import { ValidationError } from '@multiagents/contracts';

/** One field of a signature, as {@link parseSignature} reports it. */
export interface SignatureField {
  readonly name: string;
  /** Ax's type name: string, number, boolean, json, class, date, datetime, code, url, object, … */
  readonly type: string;
  readonly isArray: boolean;
  readonly isOptional: boolean;
  /** The allowed values of a `class` field. */
  readonly options?: readonly string[];
  readonly description?: string;
}

/** A parsed signature: what the agent reads from its step input and what its answer holds. */
export interface AgentSignature {
  /** The signature text as given. */
  readonly source: string;
  readonly description?: string;
  readonly inputs: readonly SignatureField[];
  readonly outputs: readonly SignatureField[];
}

/** The output field a `chain-of-thought` agent adds in front of the signature's outputs. */
export const REASONING_FIELD = 'reasoning';

const REASONING_DESCRIPTION =
  'Think step by step: the reasoning that leads to the other output fields, written before them';

function toField(field: Readonly<AxField>): SignatureField {
  const type = field.type;
  return {
    name: field.name,
    type: type?.name ?? 'string',
    isArray: type?.isArray === true,
    isOptional: field.isOptional === true,
    ...(type?.options === undefined ? {} : { options: [...type.options] }),
    ...(field.description === undefined ? {} : { description: field.description }),
  };
}

/**
 * Parses an Ax signature (`'question:string -> answer:string, sources:string[]'`, optionally with a
 * quoted description first) into its fields. Throws a ValidationError with Ax's explanation when
 * the text is not a valid signature (Ax also refuses generic names such as `text` or `data`).
 *
 * @example
 * parseSignature('question:string -> answer:string').outputs; // [{ name: 'answer', type: 'string', … }]
 */
export function parseSignature(signature: string): AgentSignature {
  let parsed: AxSignature;
  try {
    parsed = AxSignature.from(signature);
  } catch (err) {
    throw new ValidationError('invalid signature', [err instanceof Error ? err.message : String(err)]);
  }
  const description = parsed.getDescription();
  return {
    source: signature,
    ...(description === undefined ? {} : { description }),
    inputs: parsed.getInputFields().map(toField),
    outputs: parsed
      .getOutputFields()
      .filter((f) => f.isInternal !== true)
      .map(toField),
  };
}

/**
 * A fresh Ax signature for one attempt (Ax may rewrite the signature it runs, so attempts never
 * share one), with the agent's description and, for chain-of-thought, the reasoning field first.
 */
export function buildAxSignature(
  signature: string,
  options: { readonly description?: string; readonly reasoningField: boolean },
): AxSignature {
  const ax = AxSignature.from(signature);
  if (options.description !== undefined) ax.setDescription(options.description);
  if (options.reasoningField) {
    ax.setOutputFields([
      { name: REASONING_FIELD, description: REASONING_DESCRIPTION, type: { name: 'string' } },
      ...ax.getOutputFields(),
    ]);
  }
  return ax;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  return `a ${typeof value}`;
}

/** Why `value` does not fit one (non-array) field, or undefined when it does. */
function scalarProblem(field: SignatureField, value: unknown): string | undefined {
  switch (field.type) {
    case 'string':
    case 'code':
    case 'url':
      return typeof value === 'string' ? undefined : `must be a string, got ${describe(value)}`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value)
        ? undefined
        : `must be a number, got ${describe(value)}`;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `must be a boolean, got ${describe(value)}`;
    case 'class':
      return typeof value === 'string' && (field.options ?? []).includes(value)
        ? undefined
        : `must be one of ${(field.options ?? []).join(', ')}, got ${typeof value === 'string' ? JSON.stringify(value) : describe(value)}`;
    case 'date':
    case 'datetime':
      return (value instanceof Date && !Number.isNaN(value.getTime())) || typeof value === 'string'
        ? undefined
        : `must be a ${field.type}, got ${describe(value)}`;
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value)
        ? undefined
        : `must be an object, got ${describe(value)}`;
    default:
      // json and media types: any present value.
      return undefined;
  }
}

/** Every way `values` misses the `outputs` (absent required fields, wrong types). */
export function checkAnswer(
  values: Readonly<Record<string, unknown>>,
  outputs: readonly SignatureField[],
): string[] {
  const problems: string[] = [];
  for (const field of outputs) {
    const value = Object.hasOwn(values, field.name) ? values[field.name] : undefined;
    if (value === undefined || value === null || value === '') {
      if (!field.isOptional) problems.push(`output field "${field.name}" is missing`);
      continue;
    }
    if (field.isArray) {
      if (!Array.isArray(value)) {
        problems.push(`output field "${field.name}" must be an array, got ${describe(value)}`);
        continue;
      }
      value.forEach((item, i) => {
        const problem = scalarProblem(field, item);
        if (problem !== undefined) problems.push(`output field "${field.name}[${i}]" ${problem}`);
      });
      continue;
    }
    const problem = scalarProblem(field, value);
    if (problem !== undefined) problems.push(`output field "${field.name}" ${problem}`);
  }
  return problems;
}

/**
 * The signature's input fields taken from a step's input (the whole run context by default, so
 * other keys are ignored), with numbers and booleans turned into text for string fields. Values
 * are data handed to the model as text, never evaluated. Returns every problem found.
 */
export function pickInputs(
  input: unknown,
  inputs: readonly SignatureField[],
): { readonly values: Record<string, unknown>; readonly problems: string[] } {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return {
      values,
      problems: [`the step input must be an object with ${inputs.map((f) => f.name).join(', ')}`],
    };
  }
  const source = input as Record<string, unknown>;
  for (const field of inputs) {
    const raw = Object.hasOwn(source, field.name) ? source[field.name] : undefined;
    if (raw === undefined || raw === null) {
      if (!field.isOptional) problems.push(`input field "${field.name}" is missing`);
      continue;
    }
    const coerce = (value: unknown): unknown =>
      field.type === 'string' && (typeof value === 'number' || typeof value === 'boolean')
        ? String(value)
        : value;
    const value = field.isArray && Array.isArray(raw) ? raw.map(coerce) : coerce(raw);
    if (field.isArray && !Array.isArray(value)) {
      problems.push(`input field "${field.name}" must be an array, got ${describe(value)}`);
      continue;
    }
    const items = field.isArray ? (value as unknown[]) : [value];
    const problem = items.map((item) => scalarProblem(field, item)).find((p) => p !== undefined);
    if (problem !== undefined) {
      problems.push(`input field "${field.name}" ${problem}`);
      continue;
    }
    values[field.name] = value;
  }
  return { values, problems };
}
