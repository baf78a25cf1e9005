import { fillPlaceholders, runnableBlocks, shellCommands } from './support/readme-blocks';

const FENCE = '```';

describe('runnable README blocks', () => {
  it('finds only the marked blocks, with their session, file and background attributes', () => {
    const markdown = [
      '# Title',
      `${FENCE}sh`,
      'echo not run',
      FENCE,
      `${FENCE}sh runnable=project`,
      'echo one',
      FENCE,
      'text',
      `${FENCE}ts runnable=project file=first.ts`,
      "console.log('hi');",
      '',
      FENCE,
      `${FENCE}sh runnable=repo background`,
      'node server.js',
      FENCE,
      `~~~~json runnable=repo file=a.json`,
      '```',
      '~~~~',
    ].join('\n');
    expect(runnableBlocks(markdown)).toEqual([
      { line: 5, language: 'sh', session: 'project', background: false, code: 'echo one\n' },
      {
        line: 9,
        language: 'ts',
        session: 'project',
        file: 'first.ts',
        background: false,
        code: "console.log('hi');\n\n",
      },
      { line: 13, language: 'sh', session: 'repo', background: true, code: 'node server.js\n' },
      { line: 16, language: 'json', session: 'repo', file: 'a.json', background: false, code: '```\n' },
    ]);
  });

  it('refuses an attribute it does not know, rather than skipping the block', () => {
    expect(() => runnableBlocks(`${FENCE}sh runnable=repo backgroud\nx\n${FENCE}\n`)).toThrow(
      /unknown attribute "backgroud"/,
    );
  });

  it('splits a shell block into commands: continuations, heredocs, comments, expected exit codes', () => {
    const code = [
      '# a comment line',
      "alias m='pnpm -s multiagents'   # the CLI",
      '',
      'FOO=1 \\',
      '  node main.js',
      "cat > /tmp/x.yaml <<'YAML'",
      'id: x',
      '# not a comment: yaml',
      'YAML',
      'm start o --watch   # compensated: exit code 5',
      'm start o --input \'{"a":"#"}\'',
    ].join('\n');
    expect(shellCommands(code, 10)).toEqual([
      { text: "alias m='pnpm -s multiagents'   # the CLI", line: 11, expectedExitCode: 0 },
      { text: 'FOO=1 \\\n  node main.js', line: 13, expectedExitCode: 0 },
      {
        text: "cat > /tmp/x.yaml <<'YAML'\nid: x\n# not a comment: yaml\nYAML",
        line: 15,
        expectedExitCode: 0,
      },
      { text: 'm start o --watch   # compensated: exit code 5', line: 19, expectedExitCode: 5 },
      { text: 'm start o --input \'{"a":"#"}\'', line: 20, expectedExitCode: 0 },
    ]);
    expect(() => shellCommands('cat <<EOF\nno end\n')).toThrow(/heredoc EOF never ends/);
  });

  it('fills the placeholders it knows, and refuses one that has no value yet', () => {
    expect(fillPlaceholders('npm install <clone>/x.tgz --address <host:port>', { clone: '/tmp/c' })).toBe(
      'npm install /tmp/c/x.tgz --address <host:port>',
    );
    expect(() => fillPlaceholders('multiagents get <txId>', { txId: undefined })).toThrow(
      /<txId> is used before/,
    );
  });
});
