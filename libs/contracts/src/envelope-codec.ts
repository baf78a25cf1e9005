import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  timingSafeEqual,
  type BinaryLike,
  type KeyObject,
} from 'node:crypto';
import type { Envelope } from './envelope';
import { decodeWireEnvelope, encodeWireEnvelope, type WireEnvelope } from './envelope-wire';
import { PoisonMessageError, ResourceExhaustedError, ValidationError } from './errors';
import { randomNonce } from './random-nonce';
import { isEventType } from './event-types';
import { KEY_ID_PATTERN, type KeyRing } from './key-ring';

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
  /** Signed with a key id the ring does not hold (retired, not yet rolled out, or made up). */
  UnknownKey: 'unknown_key',
  /** Not a protobuf Envelope. */
  Malformed: 'malformed',
  /** id, type, txId or workflowId is empty. */
  MissingFields: 'missing_fields',
  /** `type` is not one of the known event types. */
  UnknownType: 'unknown_type',
  /** The payload is not UTF-8 JSON. */
  BadPayload: 'bad_payload',
  /** Payload keys are configured and the payload is plaintext. */
  Unencrypted: 'unencrypted',
  /** The payload names a key the ring does not hold, or does not decrypt (tampered, moved). */
  Undecryptable: 'undecryptable',
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
  /**
   * HMAC-SHA256 keys by key id, for rotation without a stop: encoding signs with the ring's current
   * key and writes its id next to the signature; decoding accepts a signature by any key of the ring
   * and refuses unsigned messages, unknown key ids and wrong signatures before parsing anything.
   * Use either this or `signingKey` (which writes the older signature without a key id).
   */
  readonly keys?: KeyRing;
  /**
   * The keys decoding accepts, by key id, when they differ from `keys` (which then only signs).
   * A worker-manager lists only the orchestrators' keys here, so it executes only commands an
   * orchestrator signed, whichever process wrote them to the stream; a consumer that never
   * publishes (a metrics collector) sets this alone. Set: every envelope decoded must be signed
   * by one of these keys.
   */
  readonly verificationKeys?: ReadonlyMap<string, Buffer>;
  /**
   * AES-256-GCM keys (32 bytes) by id: when set, every payload is encrypted with the current key
   * and bound to its envelope (id, type, txId), and decoding refuses a plaintext payload or one that
   * does not decrypt. Every key of the ring decrypts, so keys rotate like signing keys.
   */
  readonly payloadKeys?: KeyRing;
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
// With a key ring the entry value also names the key, and the MAC covers the key id too:
//
//   T = 0x42 <15+V>                   field 8 (headers), length-delimited
//       0x0a 0x0b "x-signature"       entry key
//       0x12 <V> <kid> ":" <64 hex>   entry value, V = len(kid) + 65 (kid: 1-32 chars of KEY_ID_PATTERN)
//       hex = HMAC-SHA256(key[kid], every byte before the hex)
//
// Every length fits one varint byte, so the verifier finds the trailer from the end without parsing
// anything: the kid alphabet has neither 0x12 nor ':', so only one kid length can fit.
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
/** The keyed trailer: the entry key's bytes (after the two length bytes of the headers field). */
const KEYED_ENTRY_KEY: Buffer = Buffer.concat([
  Buffer.from([(1 << 3) | 2, SIGNATURE_HEADER.length]),
  Buffer.from(SIGNATURE_HEADER, 'latin1'),
]);
const MAX_KEY_ID_LENGTH = 32;
const COLON = 0x3a;

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
    body = encodeWireEnvelope({
      id: envelope.id,
      type: envelope.type,
      txId: envelope.txId,
      workflowId: envelope.workflowId,
      step: envelope.step,
      attempt: envelope.attempt,
      timeMs: envelope.time,
      headers,
      payload:
        options?.payloadKeys === undefined
          ? payloadText(envelope.payload)
          : sealPayload(Buffer.from(payloadText(envelope.payload), 'utf8'), envelope, options.payloadKeys),
    });
  } catch (err) {
    throw new ValidationError(`cannot encode envelope ${envelope.id} (${envelope.type})`, [
      errorMessage(err),
    ]);
  }

  let bytes = body;
  const signingKey = signingKeyOf(options);
  const ring = options?.keys;
  if (ring !== undefined) {
    bytes = signWithRing(body, ring);
  } else if (signingKey !== undefined) {
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
 * {@link EnvelopeRejection}) when they are larger than `maxBytes`, unsigned, signed with an
 * unknown key id or wrongly signed while `signingKey` or `keys` is configured (checked before
 * anything is parsed), not a protobuf Envelope, missing
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
  const signingKey = signingKeyOf(options);
  const accepted = options?.verificationKeys ?? options?.keys?.keys;
  if (accepted !== undefined) verifyRingSignature(bytes, accepted);
  else if (signingKey !== undefined) verifySignature(bytes, signingKey);

  let message: WireEnvelope;
  try {
    message = decodeWireEnvelope(bytes);
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
  const plaintext = openPayload(message.payload, { id, type, txId }, options?.payloadKeys);
  if (plaintext.length !== 0) {
    try {
      payload = JSON.parse(utf8Decoder.decode(plaintext));
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

// Encrypted payload layout: 0x00 (never the first byte of JSON), version 1, key id length, key id,
// 12-byte IV, ciphertext, 16-byte GCM tag. The associated data binds it to its envelope and key.
const SEALED_MARK = 0x00;
const SEALED_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

function payloadAad(envelope: Pick<Envelope, 'id' | 'type' | 'txId'>, kid: string): Buffer {
  return Buffer.from(`${envelope.id}\0${envelope.type}\0${envelope.txId}\0${kid}`, 'utf8');
}

function sealPayload(
  plaintext: Buffer,
  envelope: Pick<Envelope, 'id' | 'type' | 'txId'>,
  ring: KeyRing,
): Buffer {
  if (plaintext.length === 0) return plaintext;
  const kid = ring.currentKeyId;
  const key = ring.keys.get(kid);
  if (key === undefined || key.length !== 32) {
    throw new ValidationError('invalid payload key ring', [`current key ${kid} is missing or not 32 bytes`]);
  }
  const iv = randomNonce(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(payloadAad(envelope, kid));
  const sealed = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([
    Buffer.from([SEALED_MARK, SEALED_VERSION, kid.length]),
    Buffer.from(kid, 'latin1'),
    iv,
    sealed,
    cipher.getAuthTag(),
  ]);
}

function openPayload(
  bytes: Uint8Array,
  envelope: Pick<Envelope, 'id' | 'type' | 'txId'>,
  ring: KeyRing | undefined,
): Uint8Array {
  const sealed = bytes.length > 0 && bytes[0] === SEALED_MARK;
  if (ring === undefined) {
    if (sealed) {
      throw poison(
        EnvelopeRejection.Undecryptable,
        `envelope ${envelope.id} has an encrypted payload and no payload key is configured`,
        { id: envelope.id },
      );
    }
    return bytes;
  }
  if (bytes.length === 0) return bytes;
  if (!sealed) {
    throw poison(
      EnvelopeRejection.Unencrypted,
      `envelope ${envelope.id} has a plaintext payload but payload keys are configured`,
      { id: envelope.id },
    );
  }
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const kidLength = buffer[2] ?? 0;
  const kidEnd = 3 + kidLength;
  const kid = buffer.subarray(3, kidEnd).toString('latin1');
  const key = ring.keys.get(kid);
  if (
    buffer[1] !== SEALED_VERSION ||
    kidLength === 0 ||
    buffer.length < kidEnd + IV_BYTES + TAG_BYTES ||
    key === undefined
  ) {
    throw poison(
      EnvelopeRejection.Undecryptable,
      `envelope ${envelope.id} is encrypted with an unknown key or format`,
      {
        id: envelope.id,
        ...(KEY_ID_PATTERN.test(kid) ? { keyId: kid } : {}),
      },
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, buffer.subarray(kidEnd, kidEnd + IV_BYTES));
    decipher.setAAD(payloadAad(envelope, kid));
    decipher.setAuthTag(buffer.subarray(buffer.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(buffer.subarray(kidEnd + IV_BYTES, buffer.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch (err) {
    throw poison(
      EnvelopeRejection.Undecryptable,
      `envelope ${envelope.id} payload does not decrypt with key ${kid}: tampered with or moved`,
      { id: envelope.id, keyId: kid },
      err,
    );
  }
}

/** The payload's JSON, written into the envelope as UTF-8 ('' for none). */
function payloadText(payload: unknown): string {
  if (payload === undefined) return '';
  // JSON.stringify throws on cycles and BigInt; the caller turns that into a ValidationError.
  const json = JSON.stringify(payload) as string | undefined;
  return json ?? '';
}

/** The legacy single key, refusing options that set both kinds of key (one would be ignored). */
function signingKeyOf(options: EnvelopeCodecOptions | undefined): BinaryLike | KeyObject | undefined {
  if (
    options?.signingKey !== undefined &&
    (options.keys !== undefined || options.verificationKeys !== undefined)
  ) {
    throw new ValidationError('invalid envelope codec options', [
      'set signingKey or keys (and verificationKeys), not both',
    ]);
  }
  return options?.signingKey;
}

function signWithRing(body: Uint8Array, ring: KeyRing): Uint8Array {
  const kid = ring.currentKeyId;
  const key = ring.keys.get(kid);
  if (key === undefined || !KEY_ID_PATTERN.test(kid)) {
    throw new ValidationError('invalid envelope key ring', [`current key ${kid} is not in the ring`]);
  }
  const valueLength = kid.length + 1 + SIGNATURE_HEX_LENGTH;
  const head = Buffer.concat([
    Buffer.from([(8 << 3) | 2, KEYED_ENTRY_KEY.length + 2 + valueLength]),
    KEYED_ENTRY_KEY,
    Buffer.from([(2 << 3) | 2, valueLength]),
    Buffer.from(`${kid}:`, 'latin1'),
  ]);
  const signed = Buffer.allocUnsafeSlow(body.length + head.length + SIGNATURE_HEX_LENGTH);
  signed.set(body, 0);
  head.copy(signed, body.length);
  const macInput = signed.subarray(0, body.length + head.length);
  signed.write(sign(key, macInput), body.length + head.length, 'latin1');
  return signed;
}

/**
 * Finds the keyed trailer from the end (see the wire layout above) and checks its HMAC with the
 * key it names, before anything is parsed.
 */
function verifyRingSignature(bytes: Uint8Array, accepted: ReadonlyMap<string, Buffer>): void {
  const hexAt = bytes.length - SIGNATURE_HEX_LENGTH;
  let kid: string | undefined;
  if (hexAt > 0 && bytes[hexAt - 1] === COLON) {
    for (let length = 1; length <= MAX_KEY_ID_LENGTH && kid === undefined; length++) {
      const kidAt = hexAt - 1 - length;
      const entryAt = kidAt - 2 - KEYED_ENTRY_KEY.length - 2;
      if (entryAt < 0) break;
      const valueLength = length + 1 + SIGNATURE_HEX_LENGTH;
      if (
        bytes[entryAt] === ((8 << 3) | 2) &&
        bytes[entryAt + 1] === KEYED_ENTRY_KEY.length + 2 + valueLength &&
        KEYED_ENTRY_KEY.equals(bytes.subarray(entryAt + 2, entryAt + 2 + KEYED_ENTRY_KEY.length)) &&
        bytes[kidAt - 2] === ((2 << 3) | 2) &&
        bytes[kidAt - 1] === valueLength
      ) {
        const candidate = Buffer.from(bytes.buffer, bytes.byteOffset + kidAt, length).toString('latin1');
        if (KEY_ID_PATTERN.test(candidate)) kid = candidate;
      }
    }
  }
  if (kid === undefined) {
    throw poison(
      EnvelopeRejection.Unsigned,
      `envelope is not signed with a key id (no trailing ${SIGNATURE_HEADER} header) but signing keys are configured`,
    );
  }
  const key = accepted.get(kid);
  if (key === undefined) {
    throw poison(
      EnvelopeRejection.UnknownKey,
      `envelope is signed with key ${kid}, which is not one of the configured keys`,
      { keyId: kid },
    );
  }
  const expected = Buffer.from(sign(key, bytes.subarray(0, hexAt)), 'latin1');
  const actual = bytes.subarray(hexAt);
  if (!timingSafeEqual(expected, actual)) {
    throw poison(
      EnvelopeRejection.BadSignature,
      `envelope ${SIGNATURE_HEADER} does not match key ${kid}: forged or tampered with`,
      { keyId: kid },
    );
  }
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

/**
 * The dead-letter text of bytes {@link decodeEnvelope} refused: `undecodable message (<reason>):
 * <message>`, the reason one of {@link EnvelopeRejection} (`unsigned`, `bad_signature`…), so an
 * operator reading dead letters tells a forgery from a bug.
 */
export function describeEnvelopeRefusal(err: unknown): string {
  const message = errorMessage(err);
  const details = err instanceof PoisonMessageError ? err.details : undefined;
  const reason =
    details !== undefined && typeof details === 'object' && 'reason' in details ? details.reason : undefined;
  return typeof reason === 'string'
    ? `undecodable message (${reason}): ${message}`
    : `undecodable message: ${message}`;
}
