import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { trackChild } from './server-process';

/**
 * A service (orchestrator or worker-manager) running as its own OS process, as in production:
 * `node <script>` with its environment, logs appended to `<logDir>/<name>.log`, ready once its
 * `/readyz` answers. Fault tests kill, pause and restart it; the benchmark runs several.
 */
export class ServiceProcess {
  private child: ChildProcess | undefined;
  private exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  /** How each incarnation ended, in order (fault tests prove a kill really happened). */
  readonly exits: { code: number | null; signal: NodeJS.Signals | null }[] = [];
  /** Incarnations that ended without the test asking (a crash of the service's own making). */
  readonly crashes: { code: number | null; signal: NodeJS.Signals | null }[] = [];
  /** Set when the test sends a signal that ends the process, so its exit is not a crash. */
  private ending = false;

  constructor(
    readonly name: string,
    /** Absolute path of the service's compiled main.js. */
    private readonly script: string,
    private readonly env: Record<string, string>,
    private readonly logDir: string,
    readonly httpPort: number,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Starts the process and waits until its /readyz answers 200. `extra` adds environment
   * variables and node options (e.g. `-r <module>` to preload a fault injector) for this
   * incarnation only.
   */
  async start(
    timeoutMs = 60_000,
    extra: { readonly env?: Record<string, string>; readonly nodeArgs?: readonly string[] } = {},
  ): Promise<void> {
    mkdirSync(this.logDir, { recursive: true });
    const log = createWriteStream(join(this.logDir, `${this.name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [...(extra.nodeArgs ?? []), this.script], {
      // GRPC_PORT 0 unless the caller names one: replicas on one machine must not share a port.
      env: {
        ...process.env,
        GRPC_PORT: '0',
        ...this.env,
        ...extra.env,
        HTTP_PORT: String(this.httpPort),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(child);
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    this.child = child;
    this.ending = false;
    this.exit = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exits.push({ code, signal });
        if (!this.ending) this.crashes.push({ code, signal });
        resolve({ code, signal });
      }),
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`${this.name} exited (${child.exitCode}) at start; see ${this.logDir}`);
      try {
        const res = await fetch(`http://127.0.0.1:${this.httpPort}/readyz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline)
        throw new Error(`${this.name} not ready after ${timeoutMs} ms; see ${this.logDir}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Says the current incarnation will end by a fault the test armed in it (not a crash). */
  expectExit(): void {
    this.ending = true;
  }

  /** Sends a signal: SIGKILL for a crash, SIGSTOP/SIGCONT for a pause, SIGTERM for a drain. */
  signal(signal: NodeJS.Signals): void {
    if (signal !== 'SIGSTOP' && signal !== 'SIGCONT') this.ending = true;
    this.child?.kill(signal);
  }

  /** Waits for the current incarnation to end (bounded). */
  async exited(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.exit) throw new Error(`${this.name} never started`);
    const timeout = new Promise<never>((_, reject) => {
      const t = setTimeout(
        () => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms`)),
        timeoutMs,
      );
      t.unref();
    });
    return Promise.race([this.exit, timeout]);
  }

  /** The service's counters (orchestrator: ignored results, CAS conflicts…). */
  async stats(): Promise<Record<string, number>> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}/stats`);
    return (await res.json()) as Record<string, number>;
  }

  /** Stops the process for good (SIGKILL if a drain does not end it in time). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.ending = true;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    try {
      await this.exited(10_000);
    } catch {
      child.kill('SIGKILL');
      await this.exited(5_000);
    }
  }
}
