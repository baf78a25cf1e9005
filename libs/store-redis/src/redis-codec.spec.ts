import { ErrorCode } from '@multiagents/contracts';
import type { Effect } from '@multiagents/core';
import { makeEnvelope, makeRun } from '@multiagents/testing';
import { redisCodec } from './redis-codec';

describe('redisCodec', () => {
  it('round-trips runs and outbox items, the version readable before the first |', () => {
    const run = makeRun({ context: { note: 'a|b' } });
    expect(redisCodec.decodeRun(redisCodec.encodeRun(run))).toEqual(run);
    const effect: Effect = { type: 'publish', topic: 't', envelope: makeEnvelope({ payload: { x: '1|2' } }) };
    const item = redisCodec.encodeOutboxItem(12, effect);
    expect(item.startsWith('12|')).toBe(true);
    expect(redisCodec.decodeOutboxItem(item)).toEqual({ version: 12, effect });
  });

  it('encodes definitions canonically, so equal content is an equal string', () => {
    const a = redisCodec.encodeDefinition({ id: 'w', version: 1, steps: [] });
    const b = redisCodec.encodeDefinition(JSON.parse('{"steps":[],"version":1,"id":"w"}'));
    expect(a).toBe(b);
  });

  it('reads the workflow id back from a run meta value, | included', () => {
    expect(redisCodec.workflowIdOfRunMeta(redisCodec.encodeRunMeta(3, 'running', 17, 'orders|eu'))).toBe(
      'orders|eu',
    );
    expect(redisCodec.workflowIdOfRunMeta('garbage')).toBeUndefined();
  });

  it('round-trips cursors and rejects anything else with INVALID_ARGUMENT', () => {
    const key = { createdAt: 1_800_000_000_001, txId: 'tx-9' };
    expect(redisCodec.decodeCursor(redisCodec.encodeCursor(key))).toEqual(key);
    for (const bad of [
      '%%',
      Buffer.from('[1]').toString('base64url'),
      Buffer.from('["a","b"]').toString('base64url'),
    ]) {
      expect(() => redisCodec.decodeCursor(bad)).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidArgument }),
      );
    }
  });
});
