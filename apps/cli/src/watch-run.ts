import type { MultiAgentsClient } from '@multiagents/client';
import {
  EventType,
  isTerminalRunState,
  type Envelope,
  type Run,
  type StepProgressPayload,
} from '@multiagents/contracts';
import type { CliIo } from './cli-io';
import { describeChanges, runHeadline, skippedUndos, stepTable } from './run-view';
import { formatDuration } from './text-table';

/** How often the live view redraws while nothing changes (running steps' durations grow). */
const REDRAW_INTERVAL_MS = 500;
/** How long the watch waits for the event-monitor to hold its stream before it goes on without. */
const PROGRESS_OPEN_TIMEOUT_MS = 5_000;
/**
 * How long the watch still prints progress after the run ended: the monitor's stream and the
 * orchestrator's are separate paths, so a step's last deltas may come in just after its end.
 */
const PROGRESS_GRACE_MS = 500;
/** Characters of a step's streamed text the live view keeps under the step. */
const LIVE_TAIL_CHARS = 72;

/**
 * The event-monitor's live events of one run (`multiagents watch --progress`): what the run's
 * steps stream while they run (`step.progress`: token deltas, status), which the run record never
 * holds. `onOpen` is called once the monitor holds the stream.
 */
export type ProgressFeed = (options: { signal: AbortSignal; onOpen: () => void }) => AsyncIterable<Envelope>;

/** One `step.progress` as the watch prints it. */
interface ProgressLine {
  readonly step: string;
  readonly attempt: number;
  readonly payload: StepProgressPayload;
  /** Events of this attempt that never arrived before this one (the bus may lose a few). */
  readonly missed: number;
}

/**
 * Reads the feed into `onProgress` until `signal` aborts, in `seq` order per attempt: a late
 * event (its successor already shown) is dropped, a gap is counted. Errors go to `onError`.
 */
async function followProgress(
  feed: ProgressFeed,
  signal: AbortSignal,
  opened: () => void,
  onProgress: (line: ProgressLine) => void,
  onError: (err: unknown) => void,
): Promise<void> {
  const lastSeq = new Map<string, number>();
  try {
    for await (const envelope of feed({ signal, onOpen: opened })) {
      if (envelope.type !== EventType.StepProgress) continue;
      const payload = envelope.payload as StepProgressPayload;
      const last = lastSeq.get(payload.commandId) ?? 0;
      if (payload.seq <= last) continue;
      lastSeq.set(payload.commandId, payload.seq);
      onProgress({
        step: envelope.step ?? '',
        attempt: envelope.attempt ?? 0,
        payload,
        missed: payload.seq - last - 1,
      });
    }
  } catch (err) {
    if (!signal.aborted) onError(err);
  } finally {
    opened();
  }
}

/** Streamed text on one line: newlines and control characters escaped. */
function inline(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

/** The lines one `step.progress` prints in line mode. */
function progressLines(line: ProgressLine): string[] {
  const out: string[] = [];
  const { payload } = line;
  if (line.missed > 0) out.push(`  ${line.step} … ${line.missed} progress event(s) missed`);
  for (const [field, text] of Object.entries(payload.deltas ?? {}))
    out.push(`  ${line.step} ${field} +"${inline(text)}"`);
  if (payload.status !== undefined) out.push(`  ${line.step} status ${JSON.stringify(payload.status)}`);
  if (payload.droppedChars !== undefined)
    out.push(
      `  ${line.step} … ${payload.droppedChars} streamed characters dropped (the bus could not keep up)`,
    );
  return out;
}

/**
 * Follows a run until it ends. On a terminal: a live view (the run's line and its steps),
 * redrawn in place. Otherwise: one line per change, for logs and pipes. With `json`: one JSON run
 * per line. Resolves with the last state seen.
 */
export async function watchRun(
  client: MultiAgentsClient,
  txId: string,
  io: CliIo,
  options: { json: boolean; progress?: ProgressFeed },
): Promise<Run | undefined> {
  const live = io.stdout.isTTY === true && !options.json;
  let last: Run | undefined;
  let drawnLines = 0;
  /** The live view's tail of each step's streamed text, by step and field. */
  const streamed = new Map<string, string>();
  const draw = (run: Run): void => {
    const now = Date.now();
    const tails = [...streamed].map(([key, text]) => `  ${key}: ${inline(text.slice(-LIVE_TAIL_CHARS))}`);
    const frame = [runHeadline(run, now), ...stepTable(run, now).map((line) => `  ${line}`), ...tails];
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
  // The monitor's stream is opened first (and waited for, within bounds), so no delta streamed
  // after the run's first state is missed.
  const stopProgress = new AbortController();
  let following: Promise<void> | undefined;
  if (options.progress !== undefined) {
    const feed = options.progress;
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    following = followProgress(
      feed,
      stopProgress.signal,
      open,
      (line) => {
        if (options.json) {
          const { payload } = line;
          io.stdout.write(
            `${JSON.stringify({ type: EventType.StepProgress, txId, step: line.step, attempt: line.attempt, ...payload, ...(line.missed > 0 ? { missed: line.missed } : {}) })}\n`,
          );
        } else if (live) {
          for (const [field, text] of Object.entries(line.payload.deltas ?? {})) {
            const key = `${line.step} ${field}`;
            streamed.set(key, ((streamed.get(key) ?? '') + text).slice(-LIVE_TAIL_CHARS));
          }
          if (last !== undefined) draw(last);
        } else for (const text of progressLines(line)) io.stdout.write(`${text}\n`);
      },
      (err) =>
        io.stderr.write(
          `progress is not shown: the event-monitor's stream failed (${err instanceof Error ? err.message : String(err)}); the run is still watched\n`,
        ),
    );
    const bound = new Promise<void>((resolve) => setTimeout(resolve, PROGRESS_OPEN_TIMEOUT_MS).unref());
    await Promise.race([opened, bound]);
  }
  try {
    for await (const run of client.watchWorkflow(txId)) {
      if (options.json) io.stdout.write(`${JSON.stringify(run)}\n`);
      else if (live) draw(run);
      else for (const line of describeChanges(last, run)) io.stdout.write(`${line}\n`);
      last = run;
    }
    if (following !== undefined && last !== undefined && isTerminalRunState(last.state)) {
      await new Promise((resolve) => setTimeout(resolve, PROGRESS_GRACE_MS));
    }
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    stopProgress.abort();
    await following;
  }
  if (last !== undefined && !options.json && !live && isTerminalRunState(last.state)) {
    const tookMs = (last.endedAt ?? last.updatedAt) - last.createdAt;
    const skipped = skippedUndos(last);
    const note =
      skipped.length > 0 ? `; not undone (an operator skipped the failed undo): ${skipped.join(', ')}` : '';
    io.stdout.write(`run ${last.txId} ended ${last.state} in ${formatDuration(tookMs)}${note}\n`);
  }
  return last;
}
