import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { createKeyRing, ErrorCode, PayloadRejectedError, ValidationError } from '@multiagents/contracts';
import { isEncodedPayload, type EncodedPayload } from '@multiagents/core';
import { AES_GCM_CODEC, AesGcmPayloadCodec } from './aes-gcm-payload-codec';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const codecWith = (...entries: [string, Buffer][]): AesGcmPayloadCodec =>
  new AesGcmPayloadCodec({ keys: createKeyRing(entries) });

async function rejection(promise: Promise<unknown>): Promise<PayloadRejectedError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PayloadRejectedError);
  expect((err as PayloadRejectedError).code).toBe(ErrorCode.PayloadRejected);
  expect((err as PayloadRejectedError).retryable).toBe(false);
  return err as PayloadRejectedError;
}

function flip(encoded: EncodedPayload, at: number): EncodedPayload {
  const data = Buffer.from(encoded.data, 'base64');
  data[at % data.length] = (data[at % data.length] as number) ^ 0x01;
  return { ...encoded, data: data.toString('base64') };
}

describe('AesGcmPayloadCodec', () => {
  const codec = codecWith(['k1', k1]);

  it('round-trips JSON values, and the stored form is ciphertext', async () => {
    const value = { card: '4111 1111 1111 1111', items: [1, 'two', null, { ok: true }] };
    const encoded = await codec.encode(value, 'tx-1:input');
    expect(encoded).toEqual({ codec: AES_GCM_CODEC, keyId: 'k1', data: expect.any(String) });
    expect(JSON.stringify(encoded)).not.toContain('4111');
    expect(isEncodedPayload(encoded)).toBe(true);
    expect(isEncodedPayload(value)).toBe(false);
    expect(await codec.decode(encoded, 'tx-1:input')).toEqual(value);
    // A fresh IV each time: the same value never encrypts to the same bytes.
    expect((await codec.encode(value, 'tx-1:input')).data).not.toBe(encoded.data);
  });

  it('round-trips arbitrary JSON (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), fc.string(), async (value, aad) => {
        const plain = JSON.parse(JSON.stringify(value)) as unknown;
        expect(await codec.decode(await codec.encode(plain, aad), aad)).toEqual(plain);
      }),
      { numRuns: 300 },
    );
  });

  it('detects tampering with any byte', async () => {
    const encoded = await codec.encode({ amount: 100 });
    const length = Buffer.from(encoded.data, 'base64').length;
    for (let at = 1; at < length; at++) {
      const error = await rejection(codec.decode(flip(encoded, at)));
      expect(error.details).toMatchObject({ reason: 'tampered' });
    }
    expect((await rejection(codec.decode(flip(encoded, 0)))).details).toMatchObject({ reason: 'malformed' });
  });

  it('refuses a payload moved to another place (associated data)', async () => {
    const encoded = await codec.encode({ amount: 100 }, 'tx-1:context');
    expect((await rejection(codec.decode(encoded, 'tx-2:context'))).details).toMatchObject({
      reason: 'tampered',
    });
  });

  it('rotates: the old key still decrypts, the new key encrypts', async () => {
    const before = await codec.encode({ v: 'old' });
    const rotated = codecWith(['k2', k2], ['k1', k1]);
    expect(await rotated.decode(before)).toEqual({ v: 'old' });
    const after = await rotated.encode({ v: 'new' });
    expect(after.keyId).toBe('k2');
    expect(rotated.currentKeyId).toBe('k2');
    // A process not yet holding k2 says so instead of failing obscurely.
    expect((await rejection(codec.decode(after))).details).toMatchObject({
      reason: 'unknown_key',
      keyId: 'k2',
    });
  });

  it('refuses an unknown key id, a key id relabelled, and another codec', async () => {
    const encoded = await codec.encode({ v: 1 });
    expect((await rejection(codec.decode({ ...encoded, keyId: 'nope' }))).details).toMatchObject({
      reason: 'unknown_key',
    });
    // Same key bytes under another id: the key id is authenticated too.
    const both = codecWith(['k1', k1], ['alias', k1]);
    expect((await rejection(both.decode({ ...encoded, keyId: 'alias' }))).details).toMatchObject({
      reason: 'tampered',
    });
    expect((await rejection(codec.decode({ ...encoded, codec: 'rot13' }))).details).toMatchObject({
      reason: 'unknown_codec',
    });
    expect((await rejection(codec.decode({ ...encoded, data: 'AQ==' }))).details).toMatchObject({
      reason: 'malformed',
    });
  });

  it('refuses keys that are not 32 bytes and values that are not JSON', async () => {
    expect(() => new AesGcmPayloadCodec({ keys: createKeyRing([['short', randomBytes(48)]]) })).toThrow(
      ValidationError,
    );
    await expect(codec.encode(undefined)).rejects.toThrow(ValidationError);
  });
});
