import { Command } from 'ioredis';
import { encodeCommand, type RespArg } from './resp';

/** What ioredis itself writes for the same command (its encoder is the oracle). */
function ioredisBytes(name: string, args: readonly RespArg[]): Buffer {
  const command = new Command(name, [...args]);
  const written = command.toWritable(undefined as never);
  return Buffer.isBuffer(written) ? written : Buffer.from(written);
}

describe('encodeCommand', () => {
  it.each<[string, RespArg[]]>([
    ['no arguments', []],
    ['text only', ['key', 'value with spaces', '']],
    ['multi-byte text', ['é✓{x}', '日本語', '\r\n']],
    ['numbers', [0, -1, 42, 1.5, 2 ** 53 + 2, -(2 ** 60), 1e21]],
    [
      'bytes between text',
      ['a', Buffer.from([0, 13, 10, 255]), 'b', Buffer.alloc(0), 7, Buffer.alloc(5000, 1)],
    ],
    ['bytes first and last', [Buffer.from('x'), 'mid', Buffer.from('y')]],
  ])('writes what ioredis writes: %s', (_case, args) => {
    expect(encodeCommand('evalsha', args).equals(ioredisBytes('evalsha', args))).toBe(true);
  });

  it('writes several lists as one', () => {
    const args: RespArg[] = ['a', 1, Buffer.from('b'), 'c', Buffer.from('d')];
    const whole = encodeCommand('evalsha', args);
    expect(encodeCommand('evalsha', args.slice(0, 2), [], args.slice(2)).equals(whole)).toBe(true);
  });

  it('measures multi-byte text in bytes, not characters', () => {
    expect(encodeCommand('set', ['é']).toString('utf8')).toBe('*2\r\n$3\r\nset\r\n$2\r\né\r\n');
  });
});
