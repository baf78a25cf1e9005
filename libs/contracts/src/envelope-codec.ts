import type { Envelope } from './envelope';

/** Largest encoded envelope accepted by default (bytes). */
export const MAX_ENVELOPE_BYTES = 1024 * 1024;

/** Encodes an envelope as protobuf bytes (proto/multiagents/v1/envelope.proto). */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  // Placeholder until the protobuf codec lands (replaced in the proto task).
  return new TextEncoder().encode(JSON.stringify(envelope));
}

/** Decodes and validates protobuf bytes; throws PoisonMessageError when they are not an envelope. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  return JSON.parse(new TextDecoder().decode(bytes)) as Envelope;
}
