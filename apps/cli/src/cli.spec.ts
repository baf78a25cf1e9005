import { runCli } from './cli';
import type { CliIo } from './cli-io';

/** Runs the CLI in process with captured output; these cases never reach the network. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    readStdin: () => '',
    config: { address: '127.0.0.1:1' },
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

describe('multiagents (in process, no server)', () => {
  it('prints help and exits 0', async () => {
    const result = await run(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Usage: multiagents/);
    for (const command of [
      'workflows',
      'start',
      'get',
      'list',
      'watch',
      'signal',
      'cancel',
      'retry-step',
      'skip-step',
      'resume-compensation',
      'workers',
    ]) {
      expect(result.stdout).toContain(`  ${command}`);
    }
    expect(result.stdout).toMatch(/Exit codes: 0 ok/);
    expect((await run(['workers', '--help'])).stdout).toMatch(/drain/);
  });

  it.each([
    [['bogus']],
    [['get']],
    [['list', '--state', 'sleepy']],
    [['list', '--limit', '0']],
    [['start', 'order', '--input', '{oops']],
    [['start', 'order', '--input', '[1]']],
    [['workflows', 'register', '/no/such/file.yaml']],
  ])('exits 2 on usage errors: %p', async (args) => {
    const result = await run(args);
    expect(result.code).toBe(2);
    expect(result.stderr).not.toBe('');
    expect(result.stdout).toBe('');
  });

  it('prints usage errors as JSON with --json', async () => {
    const result = await run(['--json', 'start', 'order', '--input', '{oops']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stderr)).toEqual({
      error: { code: 'USAGE', message: expect.stringMatching(/^--input: not valid JSON/) },
    });
  });
});
