import { connectMonitor } from '@multiagents/client';
import { RunState } from '@multiagents/contracts';
import { waitFor } from '@multiagents/testing';

/** What the event-monitor says about the runs (SPEC §9.5): final states of their timelines. */
export interface MonitorCounts {
  /** Runs whose timeline ends `completed`. */
  readonly completed: number;
  readonly compensated: number;
  /** Runs the monitor has no timeline of, or whose timeline ends in another state. */
  readonly other: number;
  /** A few of those runs, with what the monitor answered for them (for a failure's message). */
  readonly otherRuns: readonly string[];
}

async function read(address: string, txIds: readonly string[]): Promise<MonitorCounts> {
  const client = connectMonitor(address, { timeoutMs: 10_000 });
  try {
    const counts = { completed: 0, compensated: 0, other: 0 };
    const otherRuns: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < txIds.length) {
          const txId = txIds[next++]!;
          const answer = await client.getTimeline(txId).then(
            (timeline) => ({
              last: timeline.entries.at(-1)?.state,
              told: timeline.entries.map((e) => `v${e.version} ${e.state}`).join(', '),
            }),
            (err: unknown) => ({ last: undefined, told: `error: ${(err as Error).message}` }),
          );
          if (answer.last === RunState.Completed) counts.completed++;
          else if (answer.last === RunState.Compensated) counts.compensated++;
          else {
            counts.other++;
            if (otherRuns.length < 5) otherRuns.push(`${txId}: ${answer.told}`);
          }
        }
      }),
    );
    return { ...counts, otherRuns };
  } finally {
    client.close();
  }
}

/**
 * The event-monitor's counts of completed and compensated runs (the final state of each run's
 * timeline) once they equal the checker's, or as they last read when they never do within
 * `timeoutMs` (the caller's assertion shows the difference).
 */
export async function monitorCounts(
  address: string,
  txIds: readonly string[],
  expected: { readonly completed: number; readonly compensated: number },
  timeoutMs: number,
): Promise<MonitorCounts> {
  let last: MonitorCounts | undefined;
  await waitFor(
    async () => {
      last = await read(address, txIds);
      return last.completed === expected.completed && last.compensated === expected.compensated;
    },
    { timeoutMs, intervalMs: 500, description: "the monitor's counts equal to the checker's" },
  ).catch(() => undefined);
  return last ?? read(address, txIds);
}
