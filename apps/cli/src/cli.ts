import { readFileSync } from 'node:fs';
import {
  connect,
  connectMonitor,
  type ClientOptions,
  type EventMonitorClient,
  type MultiAgentsClient,
  type WorkflowFilter,
} from '@multiagents/client';
import {
  hasErrorCode,
  isTerminalRunState,
  MultiAgentsError,
  RunState,
  type Run,
} from '@multiagents/contracts';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { CliIo } from './cli-io';
import { DEFAULT_ADDRESS, DEFAULT_MONITOR_ADDRESS } from './config';
import { ExitCode, exitCodeFor, UsageError } from './exit-codes';
import { loadDefinitionFile } from './load-definition-file';
import { readJsonArgument, readJsonObjectArgument } from './read-json-argument';
import { deadLetterTable, stuckRunTable, timelineTable, workerManagerTable } from './monitor-view';
import { describeRun, runListTable } from './run-view';
import { formatTime, textTable } from './text-table';
import { cliVersion } from './version';
import { workerListLines } from './worker-view';
import { watchRun, type ProgressFeed } from './watch-run';

/** Options every command accepts. */
interface GlobalOptions {
  readonly address: string;
  readonly monitorAddress: string;
  readonly json?: boolean;
  readonly timeout: number;
  readonly token?: string;
  readonly tls?: boolean;
  readonly tlsCa?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsServerName?: string;
  readonly tokenWithoutTls?: boolean;
}

/** A PEM file named by an option, read now so a wrong path is a usage error before any call. */
function readPemOption(file: string, option: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${option} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** Client connection options from the global options: the token, and TLS when any TLS option is set. */
function connectionOptions(options: GlobalOptions): ClientOptions {
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together (mutual TLS needs both)');
  }
  const useTls =
    options.tls === true ||
    options.tlsCa !== undefined ||
    options.tlsCert !== undefined ||
    options.tlsServerName !== undefined;
  return {
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.tokenWithoutTls === true ? { allowTokenWithoutTls: true } : {}),
    ...(useTls
      ? {
          tls: {
            ...(options.tlsCa === undefined ? {} : { ca: readPemOption(options.tlsCa, '--tls-ca') }),
            ...(options.tlsCert === undefined ? {} : { cert: readPemOption(options.tlsCert, '--tls-cert') }),
            ...(options.tlsKey === undefined ? {} : { key: readPemOption(options.tlsKey, '--tls-key') }),
            ...(options.tlsServerName === undefined ? {} : { serverName: options.tlsServerName }),
          },
        }
      : {}),
  };
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0)
    throw new InvalidArgumentError('must be a positive integer');
  // Deadlines and timeouts become timers: nothing longer than setTimeout can wait (~24.8 days).
  if (parsed > 2_147_483_647) throw new InvalidArgumentError('must be at most 2147483647');
  return parsed;
}

/** A time filter: ISO 8601 (`2026-01-31T12:00:00Z`) or milliseconds since the epoch. */
function timeArgument(value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(ms)) {
    throw new InvalidArgumentError('must be an ISO 8601 time or milliseconds since the epoch');
  }
  return ms;
}

const RUN_STATES = Object.values(RunState) as string[];

/** The server a command called, and where its address came from (for error hints). */
interface Target {
  readonly address: string;
  /** `--address`, `MULTIAGENTS_ADDRESS` or `default`. */
  readonly from: string;
  readonly tls: boolean;
  /** The service behind the address (default the orchestrator). */
  readonly service?: 'event-monitor';
}

/**
 * What to do about an unreachable server: the address tried, where it came from, and how to set
 * another. One line each.
 */
export function unavailableHint(target: Target): string[] {
  const from = target.from === 'default' ? 'the default' : target.from;
  if (target.service === 'event-monitor') {
    return [
      `tried ${target.address} (from ${from}); is an event-monitor running and listening there?`,
      `set another address with --monitor-address <host:port> or MULTIAGENTS_MONITOR_ADDRESS=<host:port> (default ${DEFAULT_MONITOR_ADDRESS})`,
      ...(target.tls ? [] : ['if the server uses TLS, add --tls (or --tls-ca <file>)']),
    ];
  }
  return [
    `tried ${target.address} (from ${from}); is an orchestrator running and listening there?`,
    `set another address with --address <host:port> or MULTIAGENTS_ADDRESS=<host:port> (default ${DEFAULT_ADDRESS})`,
    ...(target.tls ? [] : ['if the server uses TLS, add --tls (or --tls-ca <file>)']),
  ];
}

/** Prints a failure: one line, or every problem of an INVALID_ARGUMENT; JSON with `--json`. */
function printError(err: unknown, io: CliIo, json: boolean, target: Target | undefined): void {
  const code = err instanceof MultiAgentsError ? err.code : err instanceof UsageError ? 'USAGE' : 'ERROR';
  const message = err instanceof Error ? err.message : String(err);
  let details = err instanceof MultiAgentsError ? err.details : undefined;
  const hint = target !== undefined && hasErrorCode(err, 'UNAVAILABLE') ? unavailableHint(target) : undefined;
  if (json) {
    if (hint !== undefined && target !== undefined) {
      details = { ...details, address: target.address, addressFrom: target.from, hint: hint.join(' ') };
    }
    io.stderr.write(`${JSON.stringify({ error: { code, message, ...(details ? { details } : {}) } })}\n`);
    return;
  }
  const problems = details?.['problems'];
  if (Array.isArray(problems) && problems.length > 0) {
    const what = message.split(': ')[0] ?? message;
    io.stderr.write(`error (${code}): ${what}\n${problems.map((p) => `  - ${String(p)}\n`).join('')}`);
    return;
  }
  io.stderr.write(`error${err instanceof MultiAgentsError ? ` (${code})` : ''}: ${message}\n`);
  for (const line of hint ?? []) io.stderr.write(`  ${line}\n`);
}

/** An option whose default comes from the environment, shown in help without its value (it may be a secret). */
function optionWithDefault(flags: string, description: string, value: string | undefined): Option {
  const option = new Option(flags, description);
  return value === undefined ? option : option.default(value, 'from the environment');
}

/**
 * Runs `multiagents <args>` and resolves with the exit code (see {@link ExitCode}); never calls
 * process.exit, so it can run inside a test or another program.
 */
export async function runCli(args: readonly string[], io: CliIo): Promise<number> {
  let exitCode: number = ExitCode.Ok;
  let json = args.includes('--json');
  const clients: { close(): void }[] = [];

  let target: Target | undefined;

  // `--version` is the program's only before any command: commander would otherwise take it for
  // the program's anywhere on the line, so `start x --version 2` printed the version, started
  // nothing and exited 0. Subcommands have their own `--version <n>` (a definition's version).
  if (args.length === 1 && args[0] === '--version') {
    io.stdout.write(`${cliVersion()}\n`);
    return ExitCode.Ok;
  }

  const program = new Command('multiagents')
    .description('Start, watch and inspect MultiAgents workflows over the orchestrator gRPC API.')
    .version(cliVersion(), '-V', 'print the version of multiagents (also --version, alone)')
    // Subcommands copy this setting when they are created: every `<command> --help` lists the
    // global options (address, TLS, token, --json, --timeout) too.
    .configureHelp({ showGlobalOptions: true })
    .addOption(
      new Option('-a, --address <host:port>', 'orchestrator gRPC address (or MULTIAGENTS_ADDRESS)').default(
        io.config.address,
      ),
    )
    .addOption(
      new Option(
        '--monitor-address <host:port>',
        'event-monitor gRPC address, for timeline, stuck, dlq and workers list --all (or MULTIAGENTS_MONITOR_ADDRESS)',
      ).default(io.config.monitorAddress),
    )
    .option('--json', 'print JSON (one document per line) instead of tables')
    .addOption(
      optionWithDefault(
        '--token <jwt>',
        'bearer token (or MULTIAGENTS_TOKEN, which keeps it out of ps)',
        io.config.token,
      ),
    )
    .addOption(
      new Option('--tls', 'use TLS with the system CAs (or MULTIAGENTS_TLS=true)').default(
        io.config.tls || undefined,
      ),
    )
    .option(
      '--token-without-tls',
      'send the token to a remote address without TLS (refused otherwise; for a proxy or mesh that adds TLS)',
    )
    .addOption(
      optionWithDefault(
        '--tls-ca <file>',
        'PEM CAs of the server certificate; implies --tls (or MULTIAGENTS_TLS_CA)',
        io.config.tlsCaFile,
      ),
    )
    .addOption(
      optionWithDefault(
        '--tls-cert <file>',
        'client certificate for mutual TLS (or MULTIAGENTS_TLS_CLIENT_CERT)',
        io.config.tlsCertFile,
      ),
    )
    .addOption(
      optionWithDefault(
        '--tls-key <file>',
        'client key for mutual TLS (or MULTIAGENTS_TLS_CLIENT_KEY)',
        io.config.tlsKeyFile,
      ),
    )
    .addOption(
      optionWithDefault(
        '--tls-server-name <name>',
        'name to check the server certificate against (or MULTIAGENTS_TLS_SERVER_NAME)',
        io.config.tlsServerName,
      ),
    )
    .addOption(
      new Option('--timeout <ms>', 'deadline of each call, retries included')
        .argParser(positiveInteger)
        .default(10_000),
    )
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // With --json a usage error is a JSON document too, like every other error.
      outputError: (text, write) =>
        json
          ? write(
              `${JSON.stringify({ error: { code: 'USAGE', message: text.replace(/^error: /, '').trim() } })}\n`,
            )
          : write(text),
    })
    .showHelpAfterError(json ? false : '(see multiagents --help)')
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 other failure, 2 usage or invalid argument, 3 not found,\n' +
        '4 conflict (wrong state, already exists), 5 watched run ended but not completed.',
    );

  /** The global options and a connected client for one command. */
  const context = (command: Command): { options: GlobalOptions; client: MultiAgentsClient } => {
    const options = command.optsWithGlobals<GlobalOptions>();
    json = options.json === true;
    const fromFlag = command.getOptionValueSourceWithGlobals('address') === 'cli';
    target = {
      address: options.address,
      from: fromFlag ? '--address' : io.config.addressFromEnvironment ? 'MULTIAGENTS_ADDRESS' : 'default',
      tls: options.tls === true || options.tlsCa !== undefined || options.tlsCert !== undefined,
    };
    const client = connect(options.address, { timeoutMs: options.timeout, ...connectionOptions(options) });
    clients.push(client);
    return { options, client };
  };
  /** The global options and a client of the event-monitor for one command. */
  const monitorContext = (command: Command): { options: GlobalOptions; monitor: EventMonitorClient } => {
    const options = command.optsWithGlobals<GlobalOptions>();
    json = options.json === true;
    const fromFlag = command.getOptionValueSourceWithGlobals('monitorAddress') === 'cli';
    target = {
      address: options.monitorAddress,
      from: fromFlag
        ? '--monitor-address'
        : io.config.monitorAddressFromEnvironment
          ? 'MULTIAGENTS_MONITOR_ADDRESS'
          : 'default',
      tls: options.tls === true || options.tlsCa !== undefined || options.tlsCert !== undefined,
      service: 'event-monitor',
    };
    const monitor = connectMonitor(options.monitorAddress, {
      timeoutMs: options.timeout,
      ...connectionOptions(options),
    });
    clients.push(monitor);
    return { options, monitor };
  };
  const print = (value: unknown, human: () => string[]): void => {
    const lines = json ? [JSON.stringify(value)] : human();
    io.stdout.write(lines.map((line) => `${line}\n`).join(''));
  };
  const watchToEnd = async (
    client: MultiAgentsClient,
    txId: string,
    progress?: ProgressFeed,
  ): Promise<void> => {
    const last: Run | undefined = await watchRun(client, txId, io, {
      json,
      ...(progress === undefined ? {} : { progress }),
    });
    if (last !== undefined && isTerminalRunState(last.state) && last.state !== RunState.Completed) {
      exitCode = ExitCode.RunNotCompleted;
    }
  };

  const workflows = program.command('workflows').description('register and inspect workflow definitions');
  workflows
    .command('register')
    .description('register a definition from a YAML or JSON file')
    .argument('<file>', 'definition file (.yaml, .yml or .json)')
    .action(async (file: string, _options: unknown, command: Command) => {
      const definition = loadDefinitionFile(file);
      const { client } = context(command);
      const result = await client.registerWorkflow(definition);
      print(result, () => [
        result.created
          ? `registered ${result.id} v${result.version}`
          : `${result.id} v${result.version} was already registered with this content`,
      ]);
    });
  workflows
    .command('list')
    .description('list registered definitions')
    .action(async (_options: unknown, command: Command) => {
      const { client } = context(command);
      const summaries = await client.listWorkflowDefinitions();
      print(summaries, () =>
        textTable(
          ['ID', 'LATEST', 'VERSIONS', 'DESCRIPTION'],
          summaries.map((s) => [s.id, String(s.latestVersion), s.versions.join(','), s.description ?? '']),
        ),
      );
    });
  workflows
    .command('get')
    .description('show a definition (the latest version by default)')
    .argument('<id>', 'workflow id')
    .addOption(new Option('--version <n>', 'a specific version').argParser(positiveInteger))
    .action(async (id: string, options: { version?: number }, command: Command) => {
      const { client } = context(command);
      const definition = await client.getWorkflowDefinition(id, {
        ...(options.version === undefined ? {} : { version: options.version }),
      });
      print(definition, () => [
        `${definition.id} v${definition.version}${definition.description ? ` — ${definition.description}` : ''}`,
        '',
        ...textTable(
          ['STEP', 'KIND', 'WORKER / SIGNAL', 'UNDO', 'WHEN'],
          definition.steps.map((step) => [
            step.name,
            step.kind,
            step.kind === 'task'
              ? step.worker
              : step.kind === 'wait'
                ? step.signal
                : step.kind === 'sleep'
                  ? `${step.durationMs} ms`
                  : `${step.branches.length} branches`,
            step.kind === 'task' ? (step.compensation ?? '') : '',
            step.when ?? '',
          ]),
        ),
      ]);
    });

  program
    .command('start')
    .description('start a run')
    .argument('<workflow>', 'workflow id')
    .option('-i, --input <json|@file>', 'start input: a JSON object, or @file.json (@- for stdin)', '{}')
    .option('-k, --idempotency-key <key>', 'the same key returns the same run and never starts a second')
    .addOption(new Option('--version <n>', 'pin a definition version').argParser(positiveInteger))
    .option('-w, --watch', 'then watch the run until it ends')
    .action(
      async (
        workflow: string,
        options: { input: string; idempotencyKey?: string; version?: number; watch?: boolean },
        command: Command,
      ) => {
        const input = readJsonObjectArgument(options.input, '--input', () => io.readStdin());
        const { client } = context(command);
        const started = await client.startWorkflow(workflow, input, {
          ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
          ...(options.version === undefined ? {} : { version: options.version }),
        });
        print(started, () => [
          started.created
            ? `started run ${started.txId} of ${workflow}`
            : `run ${started.txId} was already started with this idempotency key`,
        ]);
        if (options.watch) await watchToEnd(client, started.txId);
      },
    );

  program
    .command('get')
    .description('show a run: state, context, every step with attempts, durations and errors')
    .argument('<txId>', 'transaction id')
    .action(async (txId: string, _options: unknown, command: Command) => {
      const { client } = context(command);
      const run = await client.getWorkflow(txId);
      print(run, () => describeRun(run, Date.now()));
    });

  program
    .command('list')
    .description('list runs, newest first')
    .addOption(new Option('-s, --state <state>', 'only runs in this state').choices(RUN_STATES))
    .option('-w, --workflow <id>', 'only runs of this workflow')
    .addOption(new Option('--created-after <time>', 'ISO 8601 or ms since the epoch').argParser(timeArgument))
    .addOption(
      new Option('--created-before <time>', 'ISO 8601 or ms since the epoch').argParser(timeArgument),
    )
    .addOption(new Option('-n, --limit <n>', 'runs per page').argParser(positiveInteger).default(20))
    .option('--page-token <token>', 'the next page, as printed by the previous one')
    .action(
      async (
        options: {
          state?: RunState;
          workflow?: string;
          createdAfter?: number;
          createdBefore?: number;
          limit: number;
          pageToken?: string;
        },
        command: Command,
      ) => {
        const { client } = context(command);
        const filter: WorkflowFilter = {
          ...(options.state === undefined ? {} : { state: options.state }),
          ...(options.workflow === undefined ? {} : { workflowId: options.workflow }),
          ...(options.createdAfter === undefined ? {} : { createdAfter: options.createdAfter }),
          ...(options.createdBefore === undefined ? {} : { createdBefore: options.createdBefore }),
        };
        const page = await client.listWorkflows(filter, {
          pageSize: options.limit,
          ...(options.pageToken === undefined ? {} : { pageToken: options.pageToken }),
        });
        print(page, () => [
          ...(page.runs.length === 0 ? ['no runs'] : runListTable(page.runs, Date.now())),
          ...(page.nextPageToken === undefined ? [] : [`more: --page-token ${page.nextPageToken}`]),
        ]);
      },
    );

  program
    .command('watch')
    .description('follow a run until it ends: a live view on a terminal, one line per change otherwise')
    .argument('<txId>', 'transaction id')
    .option(
      '--progress',
      "also show what running steps stream (an agent's token deltas, status reports), from the event-monitor at --monitor-address",
    )
    .action(async (txId: string, options: { progress?: boolean }, command: Command) => {
      const { client } = context(command);
      if (options.progress !== true) {
        await watchToEnd(client, txId);
        return;
      }
      const { monitor } = monitorContext(command);
      await watchToEnd(client, txId, ({ signal, onOpen }) =>
        monitor.watchEvents({ txId }, { signal, onOpen }),
      );
    });

  program
    .command('signal')
    .description('send a named signal to a run (kept if its wait step has not started)')
    .argument('<txId>', 'transaction id')
    .argument('<name>', 'signal name')
    .option('-p, --payload <json|@file>', 'signal payload as JSON, or @file.json')
    .action(async (txId: string, name: string, options: { payload?: string }, command: Command) => {
      const payload =
        options.payload === undefined
          ? undefined
          : readJsonArgument(options.payload, '--payload', () => io.readStdin());
      const { client } = context(command);
      const run = await client.signalWorkflow(txId, name, payload);
      print(run, () => [`signal ${name} delivered; run ${run.txId} is ${run.state}`]);
    });

  program
    .command('cancel')
    .description('cancel a run: steps in flight finish, completed steps are compensated')
    .argument('<txId>', 'transaction id')
    .option('-r, --reason <text>', 'why (recorded with the run)')
    .option('-w, --watch', 'then watch the run until it ends')
    .action(async (txId: string, options: { reason?: string; watch?: boolean }, command: Command) => {
      const { client } = context(command);
      const run = await client.cancelWorkflow(txId, options.reason);
      print(run, () => [`cancel requested; run ${run.txId} is ${run.state}`]);
      if (options.watch) {
        await watchToEnd(client, txId);
        // Cancelling was the point: ending `cancelled` is success here.
        if (exitCode === ExitCode.RunNotCompleted) {
          const last = await client.getWorkflow(txId);
          if (last.state === RunState.Cancelled) exitCode = ExitCode.Ok;
        }
      }
    });

  program
    .command('retry-step')
    .description('operator action: run a step of a failed run again')
    .argument('<txId>', 'transaction id')
    .argument('<step>', 'step name')
    .action(async (txId: string, step: string, _options: unknown, command: Command) => {
      const { client } = context(command);
      const run = await client.retryStep(txId, step);
      print(run, () => [`step ${step} retried; run ${run.txId} is ${run.state}`]);
    });

  program
    .command('skip-step')
    .description('operator action: mark a step of a failed run done and go on')
    .argument('<txId>', 'transaction id')
    .argument('<step>', 'step name')
    .option('-o, --output <json|@file>', 'the output to record for the step')
    .action(async (txId: string, step: string, options: { output?: string }, command: Command) => {
      const output =
        options.output === undefined
          ? undefined
          : readJsonArgument(options.output, '--output', () => io.readStdin());
      const { client } = context(command);
      const run = await client.skipStep(txId, step, output);
      print(run, () => [`step ${step} skipped; run ${run.txId} is ${run.state}`]);
    });

  program
    .command('resume-compensation')
    .description('operator action: resume undoing a compensation_failed run')
    .argument('<txId>', 'transaction id')
    .action(async (txId: string, _options: unknown, command: Command) => {
      const { client } = context(command);
      const run = await client.resumeCompensation(txId);
      print(run, () => [`compensation resumed; run ${run.txId} is ${run.state}`]);
    });

  program
    .command('timeline')
    .description("a run's timeline from the event-monitor: every transition with its events and times")
    .argument('<txId>', 'transaction id')
    .action(async (txId: string, _options: unknown, command: Command) => {
      const { monitor } = monitorContext(command);
      const timeline = await monitor.getTimeline(txId);
      print(timeline, () => [
        `run ${timeline.txId}${timeline.workflowId ? ` of ${timeline.workflowId}` : ''}`,
        ...timelineTable(timeline.entries),
      ]);
    });

  program
    .command('stuck')
    .description("runs the event-monitor's watchdog finds stuck (no progress past their threshold)")
    .option('-w, --workflow <id>', 'only runs of this workflow')
    .action(async (options: { workflow?: string }, command: Command) => {
      const { monitor } = monitorContext(command);
      const stuck = await monitor.listStuckRuns(
        options.workflow === undefined ? {} : { workflowId: options.workflow },
      );
      print(stuck, () =>
        stuck.runs.length === 0 ? ['no stuck runs'] : stuckRunTable(stuck.runs, Date.now()),
      );
    });

  const dlq = program.command('dlq').description('dead letters (through the event-monitor)');
  dlq
    .command('list')
    .description('list dead letters of one topic, or of every topic')
    .option('-t, --topic <topic>', 'events, results or commands.<worker>')
    .addOption(new Option('-n, --limit <n>', 'letters per topic').argParser(positiveInteger))
    .action(async (options: { topic?: string; limit?: number }, command: Command) => {
      const { monitor } = monitorContext(command);
      const letters = await monitor.listDeadLetters({
        ...(options.topic === undefined ? {} : { topic: options.topic }),
        ...(options.limit === undefined ? {} : { limit: options.limit }),
      });
      print(letters, () => (letters.length === 0 ? ['no dead letters'] : deadLetterTable(letters)));
    });
  dlq
    .command('replay')
    .description('publish a dead letter again (fresh delivery count) and remove it')
    .argument('<topic>', 'its topic, as `dlq list` prints it')
    .argument('<id>', 'its id, as `dlq list` prints it')
    .action(async (topic: string, id: string, _options: unknown, command: Command) => {
      const { monitor } = monitorContext(command);
      await monitor.replayDeadLetter(topic, id);
      print({ replayed: true, topic, id }, () => [`dead letter ${id} of ${topic} replayed`]);
    });
  dlq
    .command('discard')
    .description('delete a dead letter for good (it is never published again)')
    .argument('<topic>', 'its topic, as `dlq list` prints it')
    .argument('<id>', 'its id, as `dlq list` prints it')
    .action(async (topic: string, id: string, _options: unknown, command: Command) => {
      const { monitor } = monitorContext(command);
      await monitor.discardDeadLetter(topic, id);
      print({ discarded: true, topic, id }, () => [`dead letter ${id} of ${topic} discarded`]);
    });

  const workers = program.command('workers').description('the workers hosted next to the orchestrator');
  workers
    .command('list')
    .description(
      'list hosted workers with load, lingering handlers and circuit state (--all: every replica, from the event-monitor)',
    )
    .option('--all', 'every worker-manager replica of the deployment, live and gone (from the event-monitor)')
    .action(async (options: { all?: boolean }, command: Command) => {
      if (options.all) {
        const { monitor } = monitorContext(command);
        const managers = await monitor.listWorkers();
        print(managers, () =>
          managers.length === 0 ? ['no worker-managers'] : workerManagerTable(managers, Date.now()),
        );
        return;
      }
      const { client } = context(command);
      const list = await client.listWorkers();
      print(list, () => workerListLines(list));
    });
  workers
    .command('drain')
    .description('stop taking commands and wait for the ones in flight (before a shutdown)')
    .addOption(
      new Option('--drain-timeout <ms>', 'how long handlers in flight may still run').argParser(
        positiveInteger,
      ),
    )
    .action(async (options: { drainTimeout?: number }, command: Command) => {
      const { client } = context(command);
      const result = await client.drain({
        ...(options.drainTimeout === undefined ? {} : { drainTimeoutMs: options.drainTimeout }),
      });
      print(result, () => [`worker-manager ${result.managerId} drained at ${formatTime(Date.now())}`]);
    });

  try {
    await program.parseAsync([...args], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; any other parse error is a usage error (already printed).
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version'
        ? ExitCode.Ok
        : ExitCode.Usage;
    }
    printError(err, io, json, target);
    return exitCodeFor(err);
  } finally {
    for (const client of clients) client.close();
  }
  return exitCode;
}
