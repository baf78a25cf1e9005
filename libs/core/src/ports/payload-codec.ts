/**
 * The stored form of an encoded payload. JSON, so it fits wherever the plaintext did: a run record,
 * an envelope payload, a store value.
 */
export interface EncodedPayload {
  /** Which codec wrote it (`aes-256-gcm`…): a reader refuses what it cannot decode. */
  readonly codec: string;
  /** The key it was encoded with, so keys rotate: old ids still decode, the current one encodes. */
  readonly keyId: string;
  /** The codec's bytes, base64. */
  readonly data: string;
}

/**
 * Turns payloads (start inputs, step inputs and outputs, signal payloads, contexts) into what is
 * stored and sent, and back: encryption at rest and on the bus, or a KMS a user plugs in, as
 * Temporal's payload codecs do. Implementations live outside core (core imports no crypto).
 *
 * `associatedData` binds an encoded payload to where it belongs (for example `<txId>:context`): the
 * same bytes decoded under another binding fail, so a payload copied into another run is refused.
 */
export interface PayloadCodec {
  /** Encodes a JSON value. */
  encode(value: unknown, associatedData?: string): Promise<EncodedPayload>;
  /**
   * Decodes what {@link encode} produced. Rejects (never returns garbage) when the payload was
   * tampered with, was encoded under another `associatedData`, or names an unknown key or codec.
   */
  decode(encoded: EncodedPayload, associatedData?: string): Promise<unknown>;
}

/** True when `value` has the shape of an {@link EncodedPayload} (a reader tells stored forms apart). */
export function isEncodedPayload(value: unknown): value is EncodedPayload {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const record = value as Record<string, unknown>;
  return (
    Object.keys(record).length === 3 &&
    typeof record['codec'] === 'string' &&
    typeof record['keyId'] === 'string' &&
    typeof record['data'] === 'string'
  );
}
