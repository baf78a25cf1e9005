import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { fillPlaceholders, shellCommands, type RunnableBlock } from './readme-blocks';
import { ShellSession } from './shell-session';

/** One command the runner ran, for assertions and for failure messages. */
export interface RanCommand {
  readonly session: string;
  readonly line: number;
  /** The command as run (placeholders filled). */
  readonly text: string;
  readonly code: number;
  readonly output: string;
}

/** Options of {@link ReadmeRunner}. */
export interface ReadmeRunnerOptions {
  /** Where each session starts (`project`: an empty folder; `repo`: the clone). */
  readonly sessions: Readonly<Record<string, string>>;
  /** The environment of every session and background process. */
  readonly env: NodeJS.ProcessEnv;
  /** The port a background block must open before the next block runs. */
  readonly grpcPort: number;
  /** `<clone>` and any other fixed placeholder. */
  readonly placeholders: Readonly<Record<string, string>>;
  /** Per command; npm installs take the longest. */
  readonly commandTimeoutMs: number;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Runs the README's runnable blocks as its Development section says: one bash session per
 * session name, blocks in order, `file=` blocks written, `background` blocks started and awaited
 * on the gRPC port, every command's exit code checked, `<txId>` the id the session's last `start`
 * printed.
 */
export class ReadmeRunner {
  private readonly shells = new Map<string, ShellSession>();
  private readonly lastTxId = new Map<string, string>();
  private readonly backgrounds: { child: ChildProcess; output: () => string }[] = [];
  /** Every command run so far, in order. */
  readonly ran: RanCommand[] = [];

  constructor(private readonly options: ReadmeRunnerOptions) {}

  /** Runs one block; throws, with what it printed, when a command ends other than documented. */
  async run(block: RunnableBlock): Promise<void> {
    const shell = this.shell(block.session);
    if (block.file !== undefined) {
      const cwd = (await shell.run('pwd', 10_000)).output.trim();
      const path = isAbsolute(block.file) ? block.file : join(cwd, block.file);
      writeFileSync(path, block.code);
      return;
    }
    if (block.background) {
      await this.startBackground(block);
      return;
    }
    for (const command of shellCommands(block.code, block.line + 1)) {
      const text = fillPlaceholders(command.text, {
        ...this.options.placeholders,
        txId: this.lastTxId.get(block.session),
      });
      const { code, output } = await shell.run(text, this.options.commandTimeoutMs);
      this.ran.push({ session: block.session, line: command.line, text, code, output });
      const started = [...output.matchAll(/^started run ([0-9a-f-]{36})/gm)].at(-1)?.[1];
      if (started !== undefined) this.lastTxId.set(block.session, started);
      if (code !== command.expectedExitCode) {
        throw new Error(
          `README line ${command.line} (${block.session}): exited ${code}, expected ${command.expectedExitCode}\n` +
            `$ ${text}\n${output}\n${this.backgroundOutput()}`,
        );
      }
    }
  }

  /** The outputs of the commands whose text matches `pattern`. */
  outputsOf(pattern: RegExp): string[] {
    return this.ran.filter((command) => pattern.test(command.text)).map((command) => command.output);
  }

  /** Everything a session printed, background jobs included. */
  transcript(session: string): string {
    return this.shells.get(session)?.transcript ?? '';
  }

  /** Ends every session and background process. */
  async close(): Promise<void> {
    await Promise.all([...this.shells.values()].map((shell) => shell.close()));
    await Promise.all(
      this.backgrounds.map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
              resolve();
              return;
            }
            child.once('exit', () => resolve());
            process.kill(-child.pid, 'SIGTERM');
            setTimeout(() => {
              if (child.exitCode === null && child.signalCode === null)
                process.kill(-(child.pid as number), 'SIGKILL');
            }, 10_000).unref();
          }),
      ),
    );
  }

  private shell(session: string): ShellSession {
    let shell = this.shells.get(session);
    if (shell === undefined) {
      const cwd = this.options.sessions[session];
      if (cwd === undefined) throw new Error(`no folder for session "${session}"`);
      shell = ShellSession.start(cwd, this.options.env);
      this.shells.set(session, shell);
    }
    return shell;
  }

  private async startBackground(block: RunnableBlock): Promise<void> {
    const cwd = (await this.shell(block.session).run('pwd', 10_000)).output.trim();
    const script = fillPlaceholders(block.code, this.options.placeholders);
    const child = spawn('bash', ['-c', script], {
      cwd,
      env: this.options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    this.backgrounds.push({ child, output: () => output });
    const deadline = Date.now() + 60_000;
    while (!(await portOpen(this.options.grpcPort))) {
      if (child.exitCode !== null) {
        throw new Error(
          `README line ${block.line}: the background process exited ${child.exitCode}\n${output}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `README line ${block.line}: nothing listens on ${this.options.grpcPort} after 60 s\n${output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  private backgroundOutput(): string {
    return this.backgrounds
      .map(({ output }, i) => `--- background process ${i + 1}:\n${output()}`)
      .join('\n');
  }
}
