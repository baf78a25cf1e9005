import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from './exit-codes';
import { readJsonArgument, readJsonObjectArgument } from './read-json-argument';

describe('JSON arguments', () => {
  const noStdin = (): string => {
    throw new Error('no stdin here');
  };

  it('reads inline JSON, @file and @- (stdin)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'json-arg-'));
    try {
      const file = join(dir, 'input.json');
      writeFileSync(file, '{"orderId":"o-1"}');
      expect(readJsonArgument('{"a":1}', '--input', noStdin)).toEqual({ a: 1 });
      expect(readJsonArgument('"text"', '--payload', noStdin)).toBe('text');
      expect(readJsonObjectArgument(`@${file}`, '--input', noStdin)).toEqual({ orderId: 'o-1' });
      expect(readJsonObjectArgument('@-', '--input', () => '{"b":2}')).toEqual({ b: 2 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the flag in every usage error', () => {
    expect(() => readJsonArgument('{oops', '--input', noStdin)).toThrow(UsageError);
    expect(() => readJsonArgument('{oops', '--input', noStdin)).toThrow(/^--input: not valid JSON/);
    expect(() => readJsonArgument('@/no/such/file.json', '--input', noStdin)).toThrow(
      /--input @\/no\/such\/file\.json: cannot read/,
    );
    expect(() => readJsonObjectArgument('[1,2]', '--input', noStdin)).toThrow(
      /--input: must be a JSON object/,
    );
  });
});
