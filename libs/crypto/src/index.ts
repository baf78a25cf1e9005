/**
 * Payload encryption for MultiAgents: an AES-256-GCM implementation of core's `PayloadCodec` port
 * with key ids and rotation, on node:crypto. Keys come from `parseKeyRing` (contracts).
 *
 * @example
 * const codec = new AesGcmPayloadCodec({
 *   keys: parseKeyRing(config.payloadKeys, { name: 'MULTIAGENTS_PAYLOAD_KEYS', exactKeyBytes: 32 }),
 * });
 */
export { AesGcmPayloadCodec, AES_GCM_CODEC } from './aes-gcm-payload-codec';
export type { AesGcmPayloadCodecOptions } from './aes-gcm-payload-codec';
