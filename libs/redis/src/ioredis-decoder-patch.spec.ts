import { readFileSync } from 'node:fs';
import { Decoder } from 'ioredis/built/resp/decoder';

// patches/ioredis@6.0.0.patch makes ioredis' reply decoder keep its private fields on the instance
// instead of in WeakMaps (about 3x faster on a stream read). These check that the install applied
// it, and that the decoder still reads every RESP3 type the same, however the bytes are split.

const decoderPath = require.resolve('ioredis/built/resp/decoder');

const REPLIES = [
  ',3.14\r\n',
  ',-1.5e3\r\n',
  ':42\r\n',
  ':-7\r\n',
  '#t\r\n',
  '_\r\n',
  '-ERR bad\r\n',
  '+OK\r\n',
  '%2\r\n+k\r\n$3\r\nabc\r\n+n\r\n:1\r\n',
  '~2\r\n:1\r\n:2\r\n',
  '>2\r\n+message\r\n+x\r\n',
  '(12345678901234567890\r\n',
  '=8\r\ntxt:abcd\r\n',
  '*2\r\n$15\r\n1700000000000-0\r\n*2\r\n$1\r\nm\r\n$5\r\nhello\r\n',
  '*-1\r\n',
  '$0\r\n\r\n',
].join('');

function decodeAll(chunkSize: number): unknown[] {
  const out: unknown[] = [];
  const decoder = new Decoder({
    getTypeMapping: () => ({}),
    onReply: (reply) => out.push(reply),
    onErrorReply: (err) => out.push(`error: ${err.message}`),
    onPush: (push) => out.push({ push }),
  });
  const bytes = Buffer.from(REPLIES);
  for (let at = 0; at < bytes.length; at += chunkSize) decoder.write(bytes.subarray(at, at + chunkSize));
  return out;
}

describe('ioredis reply decoder (patched)', () => {
  it('is the patched one', () => {
    expect(readFileSync(decoderPath, 'utf8')).toContain('Patched by MultiAgents');
  });

  it('reads every reply type the same whole or split anywhere', () => {
    const whole = decodeAll(Number.MAX_SAFE_INTEGER);
    expect(whole).toEqual([
      3.14,
      -1500,
      42,
      -7,
      true,
      null,
      'error: ERR bad',
      'OK',
      { k: 'abc', n: 1 },
      [1, 2],
      { push: ['message', 'x'] },
      12345678901234567890n,
      'abcd',
      ['1700000000000-0', ['m', 'hello']],
      null,
      '',
    ]);
    for (const size of [1, 2, 3, 7]) expect(decodeAll(size)).toEqual(whole);
  });
});
