import { randomBytes } from 'node:crypto';
import { ValidationError } from './errors';
import { createKeyRing, parseKeyRing } from './key-ring';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).problems;
  }
  throw new Error('expected a ValidationError');
}

describe('parseKeyRing', () => {
  const a = randomBytes(32);
  const b = randomBytes(48);

  it('reads keyId:base64 pairs, the first one current', () => {
    const ring = parseKeyRing(` k2:${b.toString('base64')} , k1:${a.toString('base64url')}`);
    expect(ring.currentKeyId).toBe('k2');
    expect([...ring.keys.keys()]).toEqual(['k2', 'k1']);
    expect(ring.keys.get('k2')?.equals(b)).toBe(true);
    expect(ring.keys.get('k1')?.equals(a)).toBe(true);
  });

  it('lists every problem at once and never quotes a key', () => {
    const secret = a.toString('base64');
    const problems = problemsOf(() =>
      parseKeyRing(
        `nocolon,bad id:${secret},short:${randomBytes(8).toString('base64')},dup:${secret},dup:${secret},x:!!`,
        {
          name: 'MULTIAGENTS_SIGNING_KEYS',
        },
      ),
    );
    expect(problems).toEqual([
      'MULTIAGENTS_SIGNING_KEYS: entry 1 must be keyId:base64key',
      'MULTIAGENTS_SIGNING_KEYS: key x is not base64',
    ]);
    const second = problemsOf(() =>
      parseKeyRing(
        `bad id:${secret},short:${randomBytes(8).toString('base64')},dup:${secret},dup:${secret}`,
        {
          name: 'KEYS',
        },
      ),
    );
    expect(second).toEqual([
      'KEYS: key id "bad id" must match ^[A-Za-z0-9._-]{1,32}$',
      'KEYS: key short is 8 bytes; it must be at least 32',
      'KEYS: key id dup appears twice',
    ]);
    for (const problem of [...problems, ...second]) expect(problem).not.toContain(secret);
  });

  it('refuses an empty ring', () => {
    expect(problemsOf(() => parseKeyRing(' , '))).toEqual(['key ring has no key']);
  });

  it('checks an exact key length (AES-256)', () => {
    expect(() => parseKeyRing(`k:${a.toString('base64')}`, { exactKeyBytes: 32 })).not.toThrow();
    expect(problemsOf(() => parseKeyRing(`k:${b.toString('base64')}`, { exactKeyBytes: 32 }))).toEqual([
      'key ring: key k is 48 bytes; it must be exactly 32',
    ]);
  });

  it('builds the same ring from pairs', () => {
    const ring = createKeyRing([
      ['new', b],
      ['old', a],
    ]);
    expect(ring.currentKeyId).toBe('new');
    expect(ring.keys.size).toBe(2);
  });
});
