import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, ValidationError } from '@multiagents/contracts';
import { unwrapPayloadKeys } from './kms';
import { parseServiceConfig } from './service-config';

/** A KMS of our own: the key encryption key is in the module, data keys are AES-GCM wrapped under it. */
const KEK = randomBytes(32);

function wrap(key: Buffer, keyId: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', KEK, iv);
  cipher.setAAD(Buffer.from(keyId));
  const data = Buffer.concat([cipher.update(key), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), data]);
}

const FAKE_KMS = `const { createDecipheriv } = require('node:crypto');
const KEK = Buffer.from('${KEK.toString('hex')}', 'hex');
exports.unwrapKey = async (wrapped, keyId) => {
  if (keyId === 'pk-down') throw new Error('connect ECONNREFUSED kms.internal:443');
  const decipher = createDecipheriv('aes-256-gcm', KEK, wrapped.subarray(0, 12));
  decipher.setAAD(Buffer.from(keyId));
  decipher.setAuthTag(wrapped.subarray(12, 28));
  return Buffer.concat([decipher.update(wrapped.subarray(28)), decipher.final()]);
};
`;

describe('payload keys wrapped by a KMS', () => {
  let dir: string;
  const file = (name: string, text: string): string => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kms-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the wrapped keys and the module from the environment, the first key encrypting', () => {
    const kms = file('kms.cjs', FAKE_KMS);
    const a = wrap(randomBytes(32), 'pk-2');
    const b = wrap(randomBytes(32), 'pk-1');
    const config = parseServiceConfig(
      {
        MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: `pk-2:${a.toString('base64')},pk-1:${b.toString('base64')}`,
        MULTIAGENTS_KMS_MODULE: kms,
      },
      { grpcPort: 0 },
    );
    expect(config.wrappedPayloadKeys).toEqual({
      currentKeyId: 'pk-2',
      wrapped: new Map([
        ['pk-2', a],
        ['pk-1', b],
      ]),
      kmsModule: kms,
    });
  });

  it('refuses half a setting, both ways of giving keys, and a module that is not there', () => {
    const problems = (env: Record<string, string>): string[] => {
      try {
        parseServiceConfig(env, { grpcPort: 0 });
        return [];
      } catch (err) {
        return (err as ValidationError).problems as string[];
      }
    };
    const wrapped = `pk-1:${wrap(randomBytes(32), 'pk-1').toString('base64')}`;
    expect(problems({ MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: wrapped })).toEqual([
      'MULTIAGENTS_PAYLOAD_KEYS_WRAPPED and MULTIAGENTS_KMS_MODULE go together',
    ]);
    expect(
      problems({
        MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: wrapped,
        MULTIAGENTS_KMS_MODULE: file('kms.cjs', FAKE_KMS),
        MULTIAGENTS_PAYLOAD_KEYS: `pk-1:${randomBytes(32).toString('base64')}`,
      }),
    ).toEqual(['MULTIAGENTS_PAYLOAD_KEYS and MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: give the keys one way']);
    expect(
      problems({ MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: wrapped, MULTIAGENTS_KMS_MODULE: join(dir, 'none.js') }),
    ).toEqual([`MULTIAGENTS_KMS_MODULE=${join(dir, 'none.js')}: no such file`]);
  });

  it('unwraps every key through the module, into the ring the bus and the store encrypt with', async () => {
    const current = randomBytes(32);
    const older = randomBytes(32);
    const ring = await unwrapPayloadKeys({
      currentKeyId: 'pk-2',
      wrapped: new Map([
        ['pk-2', wrap(current, 'pk-2')],
        ['pk-1', wrap(older, 'pk-1')],
      ]),
      kmsModule: file('kms.cjs', FAKE_KMS),
    });
    expect(ring.currentKeyId).toBe('pk-2');
    expect(ring.keys).toEqual(
      new Map([
        ['pk-2', current],
        ['pk-1', older],
      ]),
    );
  });

  it('says what is wrong: no unwrapKey, a key of the wrong length, a KMS that cannot be reached', async () => {
    const keys = (keyId: string, key: Buffer) => new Map([[keyId, wrap(key, keyId)]]);
    await expect(
      unwrapPayloadKeys({
        currentKeyId: 'pk-1',
        wrapped: keys('pk-1', randomBytes(32)),
        kmsModule: file('no.cjs', 'exports.x = 1;'),
      }),
    ).rejects.toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }) as Error);
    await expect(
      unwrapPayloadKeys({
        currentKeyId: 'pk-1',
        wrapped: keys('pk-1', randomBytes(16)),
        kmsModule: file('kms.cjs', FAKE_KMS),
      }),
    ).rejects.toThrow(
      expect.objectContaining({
        problems: ['pk-1: the KMS module unwrapped it to 16 bytes; a payload key is 32 bytes'],
      }) as Error,
    );
    const down = unwrapPayloadKeys({
      currentKeyId: 'pk-down',
      wrapped: keys('pk-down', randomBytes(32)),
      kmsModule: file('kms.cjs', FAKE_KMS),
    });
    await expect(down).rejects.toThrow(
      'the KMS did not unwrap payload key pk-down: connect ECONNREFUSED kms.internal:443',
    );
    await expect(down).rejects.toMatchObject({ code: ErrorCode.Unavailable, retryable: true });
    // A key wrapped for another id does not unwrap (the id is bound to it).
    await expect(
      unwrapPayloadKeys({
        currentKeyId: 'pk-1',
        wrapped: new Map([['pk-1', wrap(randomBytes(32), 'pk-9')]]),
        kmsModule: file('kms.cjs', FAKE_KMS),
      }),
    ).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });
});
