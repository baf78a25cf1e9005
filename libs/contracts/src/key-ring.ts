import { ValidationError } from './errors';

/**
 * What a key id looks like: 1 to 32 letters, digits, `.`, `_` or `-`. Key ids travel with what
 * they signed or encrypted, so they are short, printable and never contain the `:` and `,` of the
 * key-ring format.
 */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

/**
 * Several keys by id, one of which is current: the current key signs (or encrypts) what is written
 * now; every key in the ring is still accepted when reading. Rotating is two deploys without a stop:
 * first add the new key *after* the current one everywhere (everyone accepts it), then move it first
 * (everyone writes with it); drop the old key once nothing written with it is left (payload keys:
 * a run in progress is sealed again with the current key when next written; finished runs, memos
 * and timelines keep their key until they expire).
 */
export interface KeyRing {
  /** The id of the key that signs or encrypts. */
  readonly currentKeyId: string;
  /** Every accepted key by id, the current one included. */
  readonly keys: ReadonlyMap<string, Buffer>;
}

/** Options of {@link parseKeyRing} and {@link createKeyRing}. */
export interface KeyRingOptions {
  /** Names the setting in problems (for example the environment variable). */
  readonly name?: string;
  /** Keys shorter than this are refused (HMAC keys: at least 32 bytes). */
  readonly minKeyBytes?: number;
  /** Every key must be exactly this long (AES-256: 32 bytes). */
  readonly exactKeyBytes?: number;
}

/** Keys shorter than this are refused unless a caller asks otherwise (HMAC-SHA256's block of entropy). */
export const DEFAULT_MIN_KEY_BYTES = 32;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * A key ring from `(keyId, key)` pairs; the first pair is the current key. Throws a ValidationError
 * listing every problem (no pair, a bad or repeated id, a key of the wrong length).
 */
export function createKeyRing(
  entries: readonly (readonly [string, Uint8Array])[],
  options: KeyRingOptions = {},
): KeyRing {
  const name = options.name ?? 'key ring';
  const problems: string[] = [];
  const keys = new Map<string, Buffer>();
  if (entries.length === 0) problems.push(`${name} has no key`);
  for (const [id, key] of entries) {
    if (!KEY_ID_PATTERN.test(id)) {
      problems.push(`${name}: key id ${JSON.stringify(clip(id))} must match ${KEY_ID_PATTERN.source}`);
      continue;
    }
    if (keys.has(id)) problems.push(`${name}: key id ${id} appears twice`);
    const problem = keyLengthProblem(key.length, options);
    if (problem !== undefined) problems.push(`${name}: key ${id} ${problem}`);
    keys.set(id, Buffer.from(key));
  }
  if (problems.length > 0) throw new ValidationError(`invalid ${name}`, problems);
  return { currentKeyId: (entries[0] as readonly [string, Uint8Array])[0], keys };
}

/**
 * Reads the key-ring format apps take from their environment: comma-separated `keyId:base64key`
 * pairs (standard or URL-safe base64), the first one current, for example
 * `2026-02:3q2+7w…=,2026-01:q83v…=`. Throws a ValidationError listing every problem; the keys
 * themselves never appear in a message.
 *
 * @example
 * const ring = parseKeyRing(env['MULTIAGENTS_SIGNING_KEYS'] ?? '', { name: 'MULTIAGENTS_SIGNING_KEYS' });
 * encodeEnvelope(envelope, { keys: ring });
 */
export function parseKeyRing(value: string, options: KeyRingOptions = {}): KeyRing {
  const name = options.name ?? 'key ring';
  const problems: string[] = [];
  const entries: [string, Buffer][] = [];
  const parts = value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
  parts.forEach((part, index) => {
    const colon = part.indexOf(':');
    if (colon <= 0) {
      problems.push(`${name}: entry ${index + 1} must be keyId:base64key`);
      return;
    }
    const id = part.slice(0, colon).trim();
    const encoded = part.slice(colon + 1).trim();
    if (encoded.length === 0 || !(BASE64.test(encoded) || BASE64URL.test(encoded))) {
      problems.push(`${name}: key ${clip(id)} is not base64`);
      return;
    }
    entries.push([id, Buffer.from(encoded, BASE64URL.test(encoded) ? 'base64url' : 'base64')]);
  });
  if (parts.length === 0) problems.push(`${name} has no key`);
  if (problems.length > 0) throw new ValidationError(`invalid ${name}`, problems);
  return createKeyRing(entries, options);
}

function keyLengthProblem(length: number, options: KeyRingOptions): string | undefined {
  if (options.exactKeyBytes !== undefined && length !== options.exactKeyBytes) {
    return `is ${length} bytes; it must be exactly ${options.exactKeyBytes}`;
  }
  const min = options.minKeyBytes ?? DEFAULT_MIN_KEY_BYTES;
  if (options.exactKeyBytes === undefined && length < min) {
    return `is ${length} bytes; it must be at least ${min}`;
  }
  return undefined;
}

function clip(value: string): string {
  return value.length <= 40 ? value : `${value.slice(0, 40)}…`;
}
