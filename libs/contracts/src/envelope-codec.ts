import { createHmac, timingSafeEqual, type BinaryLike, type KeyObject } from 'node:crypto';
import { Envelope as EnvelopeMessage } from '@multiagents/proto';
import type { Envelope } from './envelope';
import { PoisonMessageError, ResourceExhaustedError, ValidationError } from './errors';
import { isEventType } from './event-types';

/** Largest encoded envelope accepted by default (bytes). */
export const MAX_ENVELOPE_BYTES = 1024 * 1024;

/** The header that carries an envelope's HMAC signature; reserved for the codec. */
export const SIGNATURE_HEADER = 'x-signature';

/** Why {@link decodeEnvelope} refused a message: `details.reason` of its {@link PoisonMessageError}. */
export const EnvelopeRejection = {
  /** Larger than `maxBytes`. */
  TooLarge: 'too_large',
  /** A signing key is configured and the message carries no signature. */
  Unsigned: 'unsigned',
  /** The signature does not match: forged, tampered with, or signed with another key. */
  BadSignature: 'bad_signature',
  /** Not a protobuf Envelope. */
  Malformed: 'malformed',
  /** id, type, txId or workflowId is empty. */
  MissingFields: 'missing_fields',
  /** `type` is not one of the known event types. */
  UnknownType: 'unknown_type',
  /** The payload is not UTF-8 JSON. */
  BadPayload: 'bad_payload',
} as const;
/** One of {@link EnvelopeRejection}'s values. */
export type EnvelopeRejection = (typeof EnvelopeRejection)[keyof typeof EnvelopeRejection];

/** Options of {@link encodeEnvelope} and {@link decodeEnvelope}; pass the same to both sides. */
export interface EnvelopeCodecOptions {
  /**
   * HMAC-SHA256 key. When set, encoding signs every envelope and decoding refuses any envelope
   * whose signature is missing or wrong, before anything in it is parsed.
   */
  readonly signingKey?: BinaryLike | KeyObject;
  /** Largest encoded envelope in bytes; default {@link MAX_ENVELOPE_BYTES}. */
  readonly maxBytes?: number;
}

// Wire layout of a signed envelope (see envelope.proto):
//
//   <B: the Envelope encoded without x-signature> <T: one `headers` map entry, always 81 bytes>
//   T = 0x42 0x4f                    field 8 (headers), length-delimited, 79 bytes
//       0x0a 0x0b "x-signature"      entry key
//       0x12 0x40 <64 hex chars>     entry value: lowercase hex HMAC-SHA256(key, B)
//
// Protobuf merges repeated map entries, so every protobuf decoder reads B+T as the envelope with the
// signature header added. The verifier needs no canonical re-encoding: it checks the HMAC over the
// exact bytes received, so header order or encoder version can never make a valid signature fail.
const SIGNATURE_HEX_LENGTH = 64;
const SIGNATURE_PREFIX: Buffer = (() => {
  const key = Buffer.from(SIGNATURE_HEADER, 'latin1');
  const entryLength = 2 + key.length + 2 + SIGNATURE_HEX_LENGTH;
  return Buffer.concat([
    Buffer.from([(8 << 3) | 2, entryLength]),
    Buffer.from([(1 << 3) | 2, key.length]),
    key,
    Buffer.from([(2 << 3) | 2, SIGNATURE_HEX_LENGTH]),
  ]);
})();
const SIGNATURE_TRAILER_LENGTH = SIGNATURE_PREFIX.length + SIGNATURE_HEX_LENGTH;

const EMPTY_PAYLOAD: Buffer = Buffer.alloc(0);
// Fatal: a payload with invalid UTF-8 is refused rather than silently patched with U+FFFD.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

type MutableEnvelope = { -readonly [K in keyof Envelope]: Envelope[K] };

/**
 * Encodes an envelope as protobuf bytes (proto/multiagents/v1/envelope.proto), the payload as UTF-8
 * JSON. With `signingKey`, appends the `x-signature` header; any `x-signature` already in
 * `envelope.headers` is ignored.
 *
 * Throws `ValidationError` when the envelope cannot be encoded (payload not JSON-serialisable, an
 * attempt or time that is not an integer) and `ResourceExhaustedError` when the result is larger
 * than `maxBytes`, so an envelope no consumer would accept is refused where it is made.
 *
 * @example
 * ```ts
 * const bytes = encodeEnvelope(envelope, { signingKey });
 * const same = decodeEnvelope(bytes, { signingKey });
 * ```
 */
export function encodeEnvelope(envelope: Envelope, options?: EnvelopeCodecOptions): Uint8Array {
  let headers = envelope.headers;
  if (Object.hasOwn(headers, SIGNATURE_HEADER)) {
    const unsigned = { ...headers };
    delete unsigned[SIGNATURE_HEADER];
    headers = unsigned;
  }

  let body: Uint8Array;
  try {
    body = EnvelopeMessage.encode({
      id: envelope.id,
      type: envelope.type,
      txId: envelope.txId,
      workflowId: envelope.workflowId,
      step: envelope.step,
      attempt: envelope.attempt,
      timeMs: envelope.time,
      headers,
      payload: encodePayload(envelope.payload),
    }).finish();
  } catch (err) {
    throw new ValidationError(`cannot encode envelope ${envelope.id} (${envelope.type})`, [
      errorMessage(err),
    ]);
  }

  let bytes = body;
  const signingKey = options?.signingKey;
  if (signingKey !== undefined) {
    const signed = Buffer.allocUnsafeSlow(body.length + SIGNATURE_TRAILER_LENGTH);
    signed.set(body, 0);
    SIGNATURE_PREFIX.copy(signed, body.length);
    signed.write(sign(signingKey, body), body.length + SIGNATURE_PREFIX.length, 'latin1');
    bytes = signed;
  }

  const maxBytes = options?.maxBytes ?? MAX_ENVELOPE_BYTES;
  if (bytes.length > maxBytes) {
    throw new ResourceExhaustedError(
      `envelope ${envelope.id} (${envelope.type}) is ${bytes.length} bytes, more than the ${maxBytes}-byte limit`,
      { id: envelope.id, type: envelope.type, bytes: bytes.length, maxBytes },
    );
  }
  return bytes;
}

/**
 * Decodes and validates protobuf bytes. Throws `PoisonMessageError` (with `details.reason`, one of
 * {@link EnvelopeRejection}) when they are larger than `maxBytes`, unsigned or wrongly signed while
 * a `signingKey` is configured (checked before anything is parsed), not a protobuf Envelope, missing
 * id, type, txId or workflowId, of an unknown type, or carrying a payload that is not UTF-8 JSON.
 *
 * The returned headers never include `x-signature`: a signature belongs to the bytes, not to the
 * envelope. An empty payload decodes as `undefined`.
 */
export function decodeEnvelope(bytes: Uint8Array, options?: EnvelopeCodecOptions): Envelope {
  const maxBytes = options?.maxBytes ?? MAX_ENVELOPE_BYTES;
  if (bytes.length > maxBytes) {
    throw poison(
      EnvelopeRejection.TooLarge,
      `envelope is ${bytes.length} bytes, more than the ${maxBytes}-byte limit`,
    );
  }
  const signingKey = options?.signingKey;
  if (signingKey !== undefined) verifySignature(bytes, signingKey);

  let message: EnvelopeMessage;
  try {
    message = EnvelopeMessage.decode(bytes);
  } catch (err) {
    throw poison(
      EnvelopeRejection.Malformed,
      `not a protobuf Envelope: ${errorMessage(err)}`,
      undefined,
      err,
    );
  }

  const { id, type, txId, workflowId } = message;
  if (id === '' || type === '' || txId === '' || workflowId === '') {
    const missing = (['id', 'type', 'txId', 'workflowId'] as const).filter((field) => message[field] === '');
    throw poison(EnvelopeRejection.MissingFields, `envelope has no ${missing.join(', ')}`, {
      missing,
      ...(id === '' ? {} : { id }),
    });
  }
  if (!isEventType(type)) {
    throw poison(
      EnvelopeRejection.UnknownType,
      `envelope ${id} has unknown type ${JSON.stringify(clip(type))}`,
      {
        id,
        type: clip(type),
      },
    );
  }

  let payload: unknown;
  if (message.payload.length !== 0) {
    try {
      payload = JSON.parse(utf8Decoder.decode(message.payload));
    } catch (err) {
      throw poison(
        EnvelopeRejection.BadPayload,
        `envelope ${id} (${type}) has a payload that is not UTF-8 JSON: ${errorMessage(err)}`,
        { id, type },
        err,
      );
    }
  }

  const headers = message.headers;
  if (Object.hasOwn(headers, SIGNATURE_HEADER)) delete headers[SIGNATURE_HEADER];

  const envelope: MutableEnvelope = { id, type, txId, workflowId, time: message.timeMs, headers, payload };
  if (message.step !== undefined) envelope.step = message.step;
  if (message.attempt !== undefined) envelope.attempt = message.attempt;
  return envelope;
}

function encodePayload(payload: unknown): Buffer {
  if (payload === undefined) return EMPTY_PAYLOAD;
  // JSON.stringify throws on cycles and BigInt; the caller turns that into a ValidationError.
  const json = JSON.stringify(payload) as string | undefined;
  return json === undefined ? EMPTY_PAYLOAD : Buffer.from(json, 'utf8');
}

function sign(key: BinaryLike | KeyObject, body: Uint8Array): string {
  return createHmac('sha256', key).update(body).digest('hex');
}

function verifySignature(bytes: Uint8Array, key: BinaryLike | KeyObject): void {
  const bodyLength = bytes.length - SIGNATURE_TRAILER_LENGTH;
  if (
    bodyLength < 0 ||
    !SIGNATURE_PREFIX.equals(bytes.subarray(bodyLength, bodyLength + SIGNATURE_PREFIX.length))
  ) {
    throw poison(
      EnvelopeRejection.Unsigned,
      `envelope is not signed (no trailing ${SIGNATURE_HEADER} header) but a signing key is configured`,
    );
  }
  const expected = Buffer.from(sign(key, bytes.subarray(0, bodyLength)), 'latin1');
  const actual = bytes.subarray(bodyLength + SIGNATURE_PREFIX.length);
  if (!timingSafeEqual(expected, actual)) {
    throw poison(
      EnvelopeRejection.BadSignature,
      `envelope ${SIGNATURE_HEADER} does not match: forged, tampered with, or signed with another key`,
    );
  }
}

function poison(
  reason: EnvelopeRejection,
  message: string,
  details?: Record<string, unknown>,
  cause?: unknown,
): PoisonMessageError {
  return new PoisonMessageError(message, {
    details: { reason, ...details },
    ...(cause === undefined ? {} : { cause }),
  });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Keeps attacker-controlled strings short in messages and logs. */
function clip(value: string): string {
  return value.length <= 100 ? value : `${value.slice(0, 100)}…`;
}
