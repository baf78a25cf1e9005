import { ValidationError } from '@multiagents/contracts';
import { MAX_DEFINITION_BYTES, parseDefinition } from './parse-definition';

function problemsOf(text: string): readonly string[] {
  try {
    parseDefinition(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).problems;
  }
  throw new Error('expected a ValidationError');
}

describe('parseDefinition', () => {
  it('reads YAML where task steps leave out kind, at every level', () => {
    const definition = parseDefinition(`
id: fan
version: 2
steps:
  - name: a
    worker: w.a
  - name: p
    kind: parallel
    branches:
      - - name: b
          worker: w.b
      - - name: c
          worker: w.c
  - name: s
    kind: sleep
    durationMs: 10
`);
    expect(definition).toStrictEqual({
      id: 'fan',
      version: 2,
      steps: [
        { name: 'a', kind: 'task', worker: 'w.a' },
        {
          name: 'p',
          kind: 'parallel',
          branches: [
            [{ name: 'b', kind: 'task', worker: 'w.b' }],
            [{ name: 'c', kind: 'task', worker: 'w.c' }],
          ],
        },
        { name: 's', kind: 'sleep', durationMs: 10 },
      ],
    });
  });

  it('reads JSON', () => {
    const json = JSON.stringify({
      id: 'j',
      version: 1,
      steps: [{ name: 'a', worker: 'w', retry: { maxAttempts: 2, nonRetryableErrors: ['CARD_DECLINED'] } }],
    });
    expect(parseDefinition(json)).toStrictEqual({
      id: 'j',
      version: 1,
      steps: [
        {
          name: 'a',
          kind: 'task',
          worker: 'w',
          retry: { maxAttempts: 2, nonRetryableErrors: ['CARD_DECLINED'] },
        },
      ],
    });
  });

  it('turns invalid YAML into a ValidationError', () => {
    const problems = problemsOf('id: x\nsteps: [unclosed\n  - : :');
    expect(problems).toEqual([expect.stringMatching(/^not valid YAML or JSON/)]);
    expect(problemsOf('{"id": "x", "version": 1,')).toEqual([
      expect.stringMatching(/^not valid YAML or JSON/),
    ]);
  });

  it('reports unknown fields and other problems, all at once', () => {
    const problems = problemsOf(`
id: x
version: 1
owner: me
steps:
  - name: a
    worker: w
    timeout: 5
  - name: b
    kind: wait
    signal: go
    retry: { maxAttempts: 2 }
  - name: c
`);
    expect(problems).toEqual([
      'definition: unknown field "owner"',
      'step "a": unknown field "timeout"',
      'step "b": unknown field "retry"',
      'step "c": unknown step kind undefined (expected task, parallel, wait or sleep)',
    ]);
  });

  it('rejects text that is not a mapping, and oversized text', () => {
    expect(problemsOf('- 1\n- 2')).toEqual(['definition: must be an object']);
    expect(problemsOf('just a string')).toEqual(['definition: must be an object']);
    expect(problemsOf(`# ${'x'.repeat(MAX_DEFINITION_BYTES)}`)).toEqual([
      `text is over ${MAX_DEFINITION_BYTES} bytes`,
    ]);
  });

  it('refuses a YAML alias bomb instead of expanding it', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 10; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      lines.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(',')}]`);
    }
    expect(problemsOf(lines.join('\n'))).toEqual([expect.stringMatching(/^not valid YAML or JSON/)]);
  });
});
