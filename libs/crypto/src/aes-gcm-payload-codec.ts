import { createCipheriv, createDecipheriv } from 'node:crypto';
import { PayloadRejectedError, ValidationError, randomNonce, type KeyRing } from '@multiagents/contracts';
import type { EncodedPayload, PayloadCodec } from '@multiagents/core';

/** The `codec` name this codec writes and reads. */
export const AES_GCM_CODEC = 'aes-256-gcm';

/** Options of {@link AesGcmPayloadCodec}. */
export interface AesGcmPayloadCodecOptions {
  /**
   * 32-byte keys by id (see `parseKeyRing` in contracts, with `exactKeyBytes: 32`): the current one
   * encrypts, every one decrypts. Rotate by adding the new key after the current one everywhere,
   * then moving it first; drop the old key once nothing it encrypted is kept.
   */
  readonly keys: KeyRing;
}

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/**
 * AES-256-GCM with key ids (node:crypto): a fresh random 96-bit IV per payload, the 128-bit tag
 * checked on every decode. The associated data binds the codec, the key id and the caller's
 * `associatedData` (where the payload belongs), so neither can be swapped undetected. Data layout
 * (base64): version byte 1, IV, ciphertext, tag. Random IVs keep one key safe for about 2^32
 * payloads: rotate well before.
 *
 * @example
 * const codec = new AesGcmPayloadCodec({ keys: parseKeyRing(value, { exactKeyBytes: 32 }) });
 * const stored = await codec.encode({ card: '4111…' }, `${txId}:input`);
 * const input = await codec.decode(stored, `${txId}:input`);
 */
export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly keys: KeyRing;

  constructor(options: AesGcmPayloadCodecOptions) {
    // Checked here too: a ring parsed for HMAC (any length of at least 32 bytes) must not slip in.
    const problems: string[] = [];
    if (!options.keys.keys.has(options.keys.currentKeyId)) {
      problems.push(`the current key ${options.keys.currentKeyId} is not in the ring`);
    }
    for (const [id, key] of options.keys.keys) {
      if (key.length !== KEY_BYTES)
        problems.push(`key ${id} is ${key.length} bytes; AES-256 needs ${KEY_BYTES}`);
    }
    if (problems.length > 0) throw new ValidationError('invalid AES-256-GCM key ring', problems);
    this.keys = options.keys;
  }

  /** The id of the key new payloads are encrypted with. */
  get currentKeyId(): string {
    return this.keys.currentKeyId;
  }

  async encode(value: unknown, associatedData = ''): Promise<EncodedPayload> {
    const json = value === undefined ? undefined : (JSON.stringify(value) as string | undefined);
    if (json === undefined) {
      throw new ValidationError('cannot encode payload', [`a ${typeof value} is not a JSON value`]);
    }
    const keyId = this.keys.currentKeyId;
    const key = this.keys.keys.get(keyId) as Buffer;
    const iv = randomNonce(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aadOf(keyId, associatedData));
    const body = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
    const data = Buffer.concat([Buffer.from([VERSION]), iv, body, cipher.getAuthTag()]);
    return { codec: AES_GCM_CODEC, keyId, data: data.toString('base64') };
  }

  async decode(encoded: EncodedPayload, associatedData = ''): Promise<unknown> {
    if (encoded.codec !== AES_GCM_CODEC) {
      throw new PayloadRejectedError(
        'unknown_codec',
        `payload was encoded with ${clip(String(encoded.codec))}, not ${AES_GCM_CODEC}`,
      );
    }
    const keyId = String(encoded.keyId);
    const key = this.keys.keys.get(keyId);
    if (key === undefined) {
      throw new PayloadRejectedError(
        'unknown_key',
        `payload was encrypted with key ${clip(keyId)}, which is not configured`,
        {
          keyId: clip(keyId),
        },
      );
    }
    const data = typeof encoded.data === 'string' ? Buffer.from(encoded.data, 'base64') : Buffer.alloc(0);
    if (data.length < 1 + IV_BYTES + TAG_BYTES || data[0] !== VERSION) {
      throw new PayloadRejectedError('malformed', 'payload is not AES-256-GCM data of version 1');
    }
    const iv = data.subarray(1, 1 + IV_BYTES);
    const tag = data.subarray(data.length - TAG_BYTES);
    const body = data.subarray(1 + IV_BYTES, data.length - TAG_BYTES);
    let plaintext: string;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aadOf(keyId, associatedData));
      decipher.setAuthTag(tag);
      plaintext = Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch {
      throw new PayloadRejectedError(
        'tampered',
        `payload encrypted with key ${keyId} does not authenticate: tampered with, or bound to another place`,
        { keyId },
      );
    }
    try {
      return JSON.parse(plaintext) as unknown;
    } catch {
      // Authenticated but not JSON: only a writer holding the key could have made it.
      throw new PayloadRejectedError('malformed', 'payload decrypted to something that is not JSON', {
        keyId,
      });
    }
  }
}

function aadOf(keyId: string, associatedData: string): Buffer {
  return Buffer.from(`multiagents/${AES_GCM_CODEC}/v${VERSION}\u0000${keyId}\u0000${associatedData}`, 'utf8');
}

function clip(value: string): string {
  return value.length <= 40 ? value : `${value.slice(0, 40)}…`;
}
