import { createHash } from 'node:crypto';

/**
 * Longest token kept readable. Longer encodings are replaced by a hash: a KV key is a NATS subject
 * and the server caps a protocol line (subject included) at 4 KiB.
 */
export const MAX_TOKEN_LENGTH = 200;

/** Width of a time token: the largest safe integer has 16 digits, so every time fits. */
const TIME_DIGITS = 16;

/** Characters that stand for themselves; everything else is escaped. */
const PLAIN = /^[A-Za-z0-9_-]*$/;

/** What an empty string encodes to: a lone `=`, which no other encoding produces. */
const EMPTY = '=';

/** Marks a hashed token: `=` followed by `h`, never by an escape's uppercase hex digit. */
const HASHED = '=h';

/**
 * Encodes any string as one KV key token. KV keys may hold only `[-/_=.a-zA-Z0-9]` and the dot
 * separates tokens, so `[A-Za-z0-9_-]` stands for itself and every other UTF-16 code unit is
 * escaped: `=XX` below 0x100, `=uXXXX` above (uppercase hex). Escapes start with `=` and `=`
 * itself is escaped, so the encoding is injective over every JS string (lone surrogates
 * included) and decodable; UUIDs and the usual ids are unchanged. An encoding longer than
 * {@link MAX_TOKEN_LENGTH} becomes `=h` + the SHA-256 of the string (base64url): still unique
 * in practice, no longer decodable, so callers store the raw value where they must read it back.
 *
 * @example
 * encodeToken('3f0c9a1e-…'); // unchanged
 * encodeToken('order 42');   // 'order=2042'
 */
export function encodeToken(value: string): string {
  if (value.length <= MAX_TOKEN_LENGTH && PLAIN.test(value)) return value === '' ? EMPTY : value;
  let out = '';
  for (let i = 0; i < value.length; i += 1) {
    const unit = value.charCodeAt(i);
    const char = value[i] as string;
    if (PLAIN.test(char)) out += char;
    else if (unit < 0x100) out += `=${unit.toString(16).toUpperCase().padStart(2, '0')}`;
    else out += `=u${unit.toString(16).toUpperCase().padStart(4, '0')}`;
    if (out.length > MAX_TOKEN_LENGTH) {
      // Hash the code units (UTF-16LE), not UTF-8: lone surrogates must stay distinct here too.
      return HASHED + createHash('sha256').update(Buffer.from(value, 'utf16le')).digest('base64url');
    }
  }
  return out;
}

/**
 * The string an {@link encodeToken} token stands for, or undefined for a hashed token (the
 * hash cannot be reversed) and for text that no encoding produces.
 */
export function decodeToken(token: string): string | undefined {
  if (token === EMPTY) return '';
  if (token.startsWith(HASHED)) return undefined;
  let out = '';
  for (let i = 0; i < token.length;) {
    const char = token[i] as string;
    if (char !== '=') {
      if (!PLAIN.test(char)) return undefined;
      out += char;
      i += 1;
      continue;
    }
    const wide = token[i + 1] === 'u';
    const hex = wide ? token.slice(i + 2, i + 6) : token.slice(i + 1, i + 3);
    if (!(wide ? /^[0-9A-F]{4}$/ : /^[0-9A-F]{2}$/).test(hex)) return undefined;
    out += String.fromCharCode(parseInt(hex, 16));
    i += wide ? 6 : 3;
  }
  // Only the canonical form decodes (no escaped plain characters, no `=u00XX`).
  return encodeToken(out) === token ? out : undefined;
}

/**
 * A time (ms since the epoch, or any non-negative safe integer) as a fixed-width token, so
 * tokens sort like the numbers they stand for.
 */
export function encodeTime(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`not a time token: ${ms}`);
  return String(ms).padStart(TIME_DIGITS, '0');
}

/** The number behind an {@link encodeTime} token, or undefined for anything else. */
export function decodeTime(token: string): number | undefined {
  if (token.length !== TIME_DIGITS || !/^[0-9]+$/.test(token)) return undefined;
  const ms = Number(token);
  return Number.isSafeInteger(ms) ? ms : undefined;
}
