#!/usr/bin/env node
/**
 * `multiagents`: the command-line client of the orchestrator's gRPC API. Run `multiagents --help`;
 * the address comes from `--address` or MULTIAGENTS_ADDRESS (default 127.0.0.1:50051).
 */
import { readFileSync } from 'node:fs';
import { runCli } from './cli';
import { loadCliConfig } from './config';

// `multiagents list | head -1`: a reader that stops early is not a failure (nor a stack trace).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
});

runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  readStdin: () => readFileSync(0, 'utf8'),
  config: loadCliConfig(),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`multiagents: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
