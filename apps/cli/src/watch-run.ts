import type { MultiAgentsClient } from '@multiagents/client';
import { isTerminalRunState, type Run } from '@multiagents/contracts';
import type { CliIo } from './cli-io';
import { describeChanges, runHeadline, stepTable } from './run-view';
import { formatDuration } from './text-table';

/** How often the live view redraws while nothing changes (running steps' durations grow). */
const REDRAW_INTERVAL_MS = 500;

/**
 * Follows a run until it ends. On a terminal: a live view (the run's line and its steps),
 * redrawn in place. Otherwise: one line per change, for logs and pipes. With `json`: one JSON run
 * per line. Resolves with the last state seen.
 */
export async function watchRun(
  client: MultiAgentsClient,
  txId: string,
  io: CliIo,
  options: { json: boolean },
): Promise<Run | undefined> {
  const live = io.stdout.isTTY === true && !options.json;
  let last: Run | undefined;
  let drawnLines = 0;
  const draw = (run: Run): void => {
    const now = Date.now();
    const frame = [runHeadline(run, now), ...stepTable(run, now).map((line) => `  ${line}`)];
    // Back to the first line of the previous frame, clear to the end of the screen, draw again.
    const rewind = drawnLines > 0 ? `\u001b[${drawnLines}F\u001b[J` : '';
    io.stdout.write(`${rewind}${frame.join('\n')}\n`);
    drawnLines = frame.length;
  };
  const ticker = live
    ? setInterval(() => {
        if (last !== undefined && !isTerminalRunState(last.state)) draw(last);
      }, REDRAW_INTERVAL_MS)
    : undefined;
  try {
    for await (const run of client.watchWorkflow(txId)) {
      if (options.json) io.stdout.write(`${JSON.stringify(run)}\n`);
      else if (live) draw(run);
      else for (const line of describeChanges(last, run)) io.stdout.write(`${line}\n`);
      last = run;
    }
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
  }
  if (last !== undefined && !options.json && !live && isTerminalRunState(last.state)) {
    const tookMs = (last.endedAt ?? last.updatedAt) - last.createdAt;
    io.stdout.write(`run ${last.txId} ended ${last.state} in ${formatDuration(tookMs)}\n`);
  }
  return last;
}
