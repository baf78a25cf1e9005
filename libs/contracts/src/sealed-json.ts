import { createCipheriv, createDecipheriv } from 'node:crypto';
import { PayloadRejectedError, ValidationError } from './errors';
import type { KeyRing } from './key-ring';
import { randomNonce } from './random-nonce';

/** A JSON value encrypted where it is stored: AES-256-GCM, base64 of version, key id, IV, ciphertext, tag. */
export interface SealedJson {
  readonly $sealed: string;
}

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** True for what {@link sealJson} returns. */
export function isSealedJson(value: unknown): value is SealedJson {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === 1 &&
    typeof (value as Record<string, unknown>)['$sealed'] === 'string'
  );
}

/**
 * Encrypts a JSON value with the ring's current key (32 bytes), bound to `associatedData` (where
 * it belongs, for example `<txId>:input`): a sealed value copied elsewhere does not open.
 */
export function sealJson(ring: KeyRing, value: unknown, associatedData: string): SealedJson {
  const kid = ring.currentKeyId;
  const key = ring.keys.get(kid);
  if (key === undefined || key.length !== 32) {
    throw new ValidationError('invalid payload key ring', [`current key ${kid} is missing or not 32 bytes`]);
  }
  const iv = randomNonce(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(`${kid}\0${associatedData}`, 'utf8'));
  const body = Buffer.concat([cipher.update(JSON.stringify(value) ?? 'null', 'utf8'), cipher.final()]);
  return {
    $sealed: Buffer.concat([
      Buffer.from([VERSION, kid.length]),
      Buffer.from(kid, 'latin1'),
      iv,
      body,
      cipher.getAuthTag(),
    ]).toString('base64'),
  };
}

/** Base64 characters that hold the longest header: version, key id length, key id (≤ 255 bytes). */
const HEADER_BASE64_CHARS = Math.ceil((2 + 255) / 3) * 4;

/** The key id in a sealed value's header, when it is this format's. */
function headerKeyId(bytes: Buffer): string | undefined {
  const kidLength = bytes[1];
  if (bytes[0] !== VERSION || kidLength === undefined || bytes.length < 2 + kidLength) return undefined;
  return bytes.subarray(2, 2 + kidLength).toString('latin1');
}

/**
 * The id of the key `sealed` was sealed with (as its header says; undefined for another format).
 * Reads the header alone, not the whole value.
 */
export function sealedKeyId(sealed: SealedJson): string | undefined {
  return headerKeyId(Buffer.from(sealed.$sealed.slice(0, HEADER_BASE64_CHARS), 'base64'));
}

/** Decrypts what {@link sealJson} wrote; throws PayloadRejectedError when it does not open. */
export function openJson(ring: KeyRing, sealed: SealedJson, associatedData: string): unknown {
  const bytes = Buffer.from(sealed.$sealed, 'base64');
  const kid = headerKeyId(bytes);
  const key = kid === undefined ? undefined : ring.keys.get(kid);
  const ivAt = 2 + (kid?.length ?? 0);
  if (kid === undefined || key === undefined || bytes.length < ivAt + IV_BYTES + TAG_BYTES) {
    throw new PayloadRejectedError(
      'unknown_key',
      `sealed value for ${associatedData} uses an unknown key or format`,
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(ivAt, ivAt + IV_BYTES));
    decipher.setAAD(Buffer.from(`${kid}\0${associatedData}`, 'utf8'));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    const plain = Buffer.concat([
      decipher.update(bytes.subarray(ivAt + IV_BYTES, bytes.length - TAG_BYTES)),
      decipher.final(),
    ]);
    return JSON.parse(plain.toString('utf8')) as unknown;
  } catch (err) {
    throw new PayloadRejectedError(
      'undecryptable',
      `sealed value for ${associatedData} does not open with key ${kid}`,
      {
        error: err instanceof Error ? err.message : String(err),
      },
    );
  }
}
