import { parseMetricsText, sumSamples, waitFor, type ServiceProcess } from '@multiagents/testing';

/** What the metrics-collector says about the runs (SPEC §9.5), next to the checker's counts. */
export interface CollectorCounts {
  /** `multiagents_runs{state}`: read from the store at scrape time, exact across restarts. */
  readonly runsCompleted: number;
  readonly runsCompensated: number;
  /** `multiagents_runs_finished_total{outcome}`: the collector's own counters since it started. */
  readonly finishedCompleted: number;
  readonly finishedCompensated: number;
  /** Events of the collector's group delivered and not acknowledged, or not delivered yet. */
  readonly eventsBehind: number;
}

async function read(collector: ServiceProcess): Promise<CollectorCounts> {
  const res = await fetch(`http://127.0.0.1:${collector.httpPort}/metrics`);
  const samples = parseMetricsText(await res.text());
  const group = { topic: 'events', group: 'metrics-collector' };
  return {
    runsCompleted: sumSamples(samples, 'multiagents_runs', { state: 'completed' }),
    runsCompensated: sumSamples(samples, 'multiagents_runs', { state: 'compensated' }),
    finishedCompleted: sumSamples(samples, 'multiagents_runs_finished_total', { outcome: 'completed' }),
    finishedCompensated: sumSamples(samples, 'multiagents_runs_finished_total', { outcome: 'compensated' }),
    eventsBehind:
      sumSamples(samples, 'multiagents_bus_consumer_pending', group) +
      sumSamples(samples, 'multiagents_bus_consumer_lag', group),
  };
}

/**
 * The collector's counts once they agree with the checker's (`countersToo`: its counters as well
 * as the store's gauge, where the collector ran without a restart), or as they last read when
 * they never do within `timeoutMs` (the caller's assertion shows the difference).
 */
export async function collectorCounts(
  collector: ServiceProcess,
  expected: { readonly completed: number; readonly compensated: number },
  countersToo: boolean,
  timeoutMs: number,
): Promise<CollectorCounts> {
  let last: CollectorCounts | undefined;
  await waitFor(
    async () => {
      last = await read(collector);
      const gauges =
        last.runsCompleted === expected.completed && last.runsCompensated === expected.compensated;
      const counters =
        !countersToo ||
        (last.finishedCompleted === expected.completed && last.finishedCompensated === expected.compensated);
      return gauges && counters && last.eventsBehind === 0;
    },
    { timeoutMs, intervalMs: 200, description: "the metrics' counts equal to the checker's" },
  ).catch(() => undefined);
  return last ?? read(collector);
}
