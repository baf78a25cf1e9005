import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, unavailableHint } from './cli';
import type { CliIo } from './cli-io';

/** Runs the CLI in process with captured output; these cases never reach the network. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    readStdin: () => '',
    config: { address: '127.0.0.1:1', monitorAddress: '127.0.0.1:1', tls: false },
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
      'timeline',
      'stuck',
      'dlq',
      'workers',
    ]) {
      expect(result.stdout).toContain(`  ${command}`);
    }
    expect(result.stdout).toMatch(/Exit codes: 0 ok/);
    expect((await run(['workers', '--help'])).stdout).toMatch(/drain/);
    const dlq = (await run(['dlq', '--help'])).stdout;
    for (const command of ['list', 'replay', 'discard']) expect(dlq).toContain(`  ${command} `);
  });

  it('prints the package version with --version', async () => {
    const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V']) {
      expect(await run([flag])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });

  it("shows the global options in every subcommand's help", async () => {
    /** The commands a help text lists (`  start [options] <workflow>` → `start`). */
    const commandsIn = (help: string): string[] => {
      const section = help.slice(help.indexOf('Commands:'));
      return [...section.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)]
        .map((m) => m[1] as string)
        .filter((name) => name !== 'help');
    };
    const top = commandsIn((await run(['--help'])).stdout);
    const paths = [];
    for (const command of top) {
      const help = (await run([command, '--help'])).stdout;
      const nested = help.includes('Commands:') ? commandsIn(help) : [];
      paths.push(...(nested.length > 0 ? nested.map((sub) => [command, sub]) : [[command]]));
    }
    expect(paths).toEqual(expect.arrayContaining([['get'], ['workflows', 'register'], ['workers', 'drain']]));
    for (const path of paths) {
      const result = await run([...path, '--help']);
      expect(result.code).toBe(0);
      const at = result.stdout.indexOf('Global Options:');
      const globals = at < 0 ? '' : result.stdout.slice(at);
      for (const option of [
        '--address <host:port>',
        '--json',
        '--timeout <ms>',
        '--token <jwt>',
        '--tls-ca <file>',
      ]) {
        expect({ command: path.join(' '), hasOption: globals.includes(option) }).toEqual({
          command: path.join(' '),
          hasOption: true,
        });
      }
    }
  });

  it('says which address an unreachable server was tried at and how to set another', () => {
    expect(unavailableHint({ address: '10.0.0.9:7000', from: '--address', tls: false })).toEqual([
      'tried 10.0.0.9:7000 (from --address); is an orchestrator running and listening there?',
      'set another address with --address <host:port> or MULTIAGENTS_ADDRESS=<host:port> (default 127.0.0.1:50051)',
      'if the server uses TLS, add --tls (or --tls-ca <file>)',
    ]);
    expect(unavailableHint({ address: 'h:1', from: 'default', tls: true })[0]).toBe(
      'tried h:1 (from the default); is an orchestrator running and listening there?',
    );
  });

  it.each([
    [['bogus']],
    [['get']],
    [['list', '--state', 'sleepy']],
    [['list', '--limit', '0']],
    [['start', 'order', '--input', '{oops']],
    [['start', 'order', '--input', '[1]']],
    [['workflows', 'register', '/no/such/file.yaml']],
    [['dlq', 'discard', 'events']],
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
    // Also those the argument parser finds (a missing argument, an unknown option): one document.
    for (const args of [
      ['--json', 'start'],
      ['--json', 'list', '--bogus'],
    ]) {
      const parsed = await run(args);
      expect(parsed.code).toBe(2);
      expect(JSON.parse(parsed.stderr)).toEqual({ error: { code: 'USAGE', message: expect.any(String) } });
    }
  });

  it('refuses to send a token in clear to a remote address, unless told TLS is added on the way', async () => {
    const refused = await run(['--address', '10.255.255.1:50051', '--token', 'abc.def.ghi', 'get', 'tx-1']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/a bearer token would go to 10\.255\.255\.1:50051 unencrypted/);
    // Loopback: sent (and nothing listens there).
    const local = await run([
      '--address',
      '127.0.0.1:1',
      '--token',
      'abc.def.ghi',
      '--timeout',
      '200',
      'get',
      'tx-1',
    ]);
    expect(local.stderr).toMatch(/UNAVAILABLE/);
  });

  it("reads --version after a command as that command's (a definition version), not the CLI's", async () => {
    // Nothing listens at 127.0.0.1:1: the command ran (and failed to reach the server).
    for (const args of [
      ['start', 'order', '--version', '2'],
      ['workflows', 'get', 'order', '--version', '1'],
    ]) {
      const result = await run(['--timeout', '200', ...args]);
      expect({ args, code: result.code }).toEqual({ args, code: 1 });
      expect(result.stderr).toMatch(/UNAVAILABLE/);
    }
  });
});
