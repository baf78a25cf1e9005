import {
  ErrorCode,
  MultiAgentsError,
  ValidationError,
  type EnvelopeCodecOptions,
  type KeyRing,
} from '@multiagents/contracts';
import type { KmsModule, WrappedPayloadKeys } from './service-config';

/** AES-256-GCM keys: what a KMS must unwrap a payload key to. */
const PAYLOAD_KEY_BYTES = 32;

function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/**
 * The payload key ring, each key unwrapped by the KMS module. A module that cannot be loaded or
 * exports no `unwrapKey`, and a key that unwraps to the wrong length, are configuration errors; a
 * KMS that refuses or cannot be reached is UNAVAILABLE (retryable: the service waits for it).
 */
export async function unwrapPayloadKeys(wrapped: WrappedPayloadKeys): Promise<KeyRing> {
  let module: Partial<KmsModule>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a user's module, named by path at run time
    module = require(wrapped.kmsModule) as Partial<KmsModule>;
  } catch (err) {
    throw new ValidationError('MULTIAGENTS_KMS_MODULE', [
      `${wrapped.kmsModule}: cannot be loaded (${messageOf(err)})`,
    ]);
  }
  const unwrapKey = module.unwrapKey;
  if (typeof unwrapKey !== 'function') {
    throw new ValidationError('MULTIAGENTS_KMS_MODULE', [
      `${wrapped.kmsModule}: must export unwrapKey(wrapped: Buffer, keyId: string) => Promise<Buffer>`,
    ]);
  }
  const keys = new Map<string, Buffer>();
  for (const [keyId, blob] of wrapped.wrapped) {
    let key: unknown;
    try {
      key = await unwrapKey(Buffer.from(blob), keyId);
    } catch (err) {
      throw new MultiAgentsError(
        ErrorCode.Unavailable,
        `the KMS did not unwrap payload key ${keyId}: ${messageOf(err)}`,
        { cause: err, retryable: true, details: { keyId } },
      );
    }
    if (!(key instanceof Uint8Array) || key.length !== PAYLOAD_KEY_BYTES) {
      const got = key instanceof Uint8Array ? `${key.length} bytes` : typeof key;
      throw new ValidationError('MULTIAGENTS_PAYLOAD_KEYS_WRAPPED', [
        `${keyId}: the KMS module unwrapped it to ${got}; a payload key is ${PAYLOAD_KEY_BYTES} bytes`,
      ]);
    }
    keys.set(keyId, Buffer.from(key));
  }
  return { currentKeyId: wrapped.currentKeyId, keys };
}

/** The bus codec options with the unwrapped payload keys, when the keys come wrapped. */
export async function withUnwrappedPayloadKeys(config: {
  readonly busCodec?: EnvelopeCodecOptions;
  readonly wrappedPayloadKeys?: WrappedPayloadKeys;
}): Promise<EnvelopeCodecOptions | undefined> {
  if (config.wrappedPayloadKeys === undefined) return config.busCodec;
  return { ...config.busCodec, payloadKeys: await unwrapPayloadKeys(config.wrappedPayloadKeys) };
}
