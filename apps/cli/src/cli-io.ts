import type { CliConfig } from './config';

/** Where the CLI writes, and what it knows about its terminal: injected so tests can capture it. */
export interface CliIo {
  readonly stdout: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly stderr: { write(text: string): unknown };
  /** Reads standard input whole (for `--input @-`). */
  readStdin(): string;
  readonly config: CliConfig;
}
