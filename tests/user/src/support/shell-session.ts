import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';

/** What one command of a session printed (stdout and stderr together) and how it ended. */
export interface SessionResult {
  readonly code: number;
  readonly output: string;
}

/**
 * One bash shell that runs commands one after another, as a person types them into a terminal:
 * `cd`, `export` and `alias` carry over, and jobs started with `&` keep running (`wait` waits
 * for them). Each command's stdin is /dev/null, its stderr goes with its stdout, and a marker
 * printed after it tells where its output ends and what it exited with.
 */
export class ShellSession {
  private output = '';
  private readonly waiters: (() => void)[] = [];
  private exited = false;

  private constructor(private readonly shell: ChildProcessWithoutNullStreams) {
    shell.stdout.on('data', (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
      for (const wake of this.waiters.splice(0)) wake();
    });
    shell.once('exit', () => {
      this.exited = true;
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** Starts bash in `cwd` with exactly `env`. */
  static start(cwd: string, env: NodeJS.ProcessEnv): ShellSession {
    const shell = spawn('bash', ['--noprofile', '--norc'], { cwd, env, stdio: 'pipe', detached: true });
    const session = new ShellSession(shell);
    shell.stdin.write('exec 2>&1\nshopt -s expand_aliases\n');
    return session;
  }

  /** Runs one command (it may span lines) and resolves once it has ended. */
  async run(command: string, timeoutMs: number): Promise<SessionResult> {
    const marker = `__session_done_${randomUUID()}__`;
    const from = this.output.length;
    // The group on its own lines: a trailing comment cannot swallow the closing brace.
    this.shell.stdin.write(`{ ${command}\n} </dev/null\nprintf '\\n%s %d\\n' '${marker}' "$?"\n`);
    const done = new RegExp(`\\n${marker} (\\d+)\\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = done.exec(this.output.slice(from));
      if (match) {
        const end = from + match.index;
        const output = this.output.slice(from, end);
        this.output = this.output.slice(0, end) + this.output.slice(end + match[0].length);
        return { code: Number(match[1]), output };
      }
      if (this.exited)
        throw new Error(`the shell exited while running: ${command}\n${this.output.slice(from)}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`still running after ${timeoutMs} ms: ${command}\n${this.output.slice(from)}`);
      }
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  /** Everything the session printed so far, background jobs included (without the markers). */
  get transcript(): string {
    return this.output;
  }

  /** Ends the shell and everything it started (its process group). */
  async close(): Promise<void> {
    if (this.exited || this.shell.pid === undefined) return;
    const exited = new Promise<void>((resolve) => this.shell.once('exit', () => resolve()));
    try {
      process.kill(-this.shell.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-(this.shell.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5_000);
    await exited;
    clearTimeout(timer);
  }
}
