/// <reference types="jest" />
import { buildServices, runFaultScenario, type BackendUnderTest, type Fault } from './fault-scenario';

/** Every fault, in the order the suites run them. */
export const FAULTS: readonly Fault[] = [
  'kill-worker-manager',
  'kill-orchestrator',
  'crash-after-commit',
  'kill-broker',
  'pause-worker-manager',
  'kill-collector',
  'kill-monitor',
];

/**
 * Orders per fault: 2,000 in CI; `FAULT_N=10000 pnpm exec jest tests/fault` runs the long
 * version (see the README).
 */
const N = Number(process.env['FAULT_N'] ?? '2000');
/** A run that "passes" because nothing happened does not pass: at least this share must finish right. */
const MIN_FINISHED_SHARE = 0.95;

/** The same fault tests for every backend (or the faults given). */
export function describeFaults(
  backend: BackendUnderTest,
  faults: readonly Fault[] = FAULTS,
  n: number = N,
): void {
  describe(`${backend.label ?? backend.name} (${backend.settings} settings): faults with real processes`, () => {
    beforeAll(() => buildServices(), 300_000);

    it.each(faults)(
      '%s: every run ends once, in the right state, effects once, nothing pending',
      async (fault) => {
        const result = await runFaultScenario(backend, fault, n);
        const { problems, ...summary } = result;
        // The recovery numbers are part of the report (issue notes).
        process.stdout.write(`fault-test ${JSON.stringify(summary)}\n`);
        expect(problems.slice(0, 20)).toEqual([]);
        // No service ended by itself (an unhandled error in a process the fault did not touch).
        expect(result.crashes).toEqual([]);
        // Every order is accounted for: completed, compensated, or (only where the broker's
        // settings allow it to forget acknowledged writes) reported lost by the broker.
        expect(result.completed + result.compensated + result.lostByBroker).toBe(n);
        expect(result.other).toBe(0);
        if (backend.settings === 'durable' || (fault !== 'kill-broker' && fault !== 'kill-cluster-node'))
          expect(result.lostByBroker).toBe(0);
        expect(result.completed + result.compensated).toBeGreaterThanOrEqual(n * MIN_FINISHED_SHARE);
        expect(result.faultEvidence).not.toBe('');
        // SPEC §9.5: the metrics' counts of completed and compensated runs equal the checker's.
        const { metrics } = result;
        expect([metrics.runsCompleted, metrics.runsCompensated, metrics.eventsBehind]).toEqual([
          result.completed,
          result.compensated,
          0,
        ]);
        if (metrics.countersExact) {
          expect([metrics.finishedCompleted, metrics.finishedCompensated]).toEqual([
            result.completed,
            result.compensated,
          ]);
        }
        // SPEC §9.5: the event-monitor's timelines end completed or compensated as the checker says.
        // On a mismatch, the runs the monitor does not show ended, with their timelines, are in the diff.
        const monitorSays = [result.monitor.completed, result.monitor.compensated];
        const checkerSays = [result.completed, result.compensated];
        const same = monitorSays.every((count, i) => count === checkerSays[i]);
        expect({ counts: monitorSays, runs: same ? [] : result.monitor.otherRuns }).toEqual({
          counts: checkerSays,
          runs: [],
        });
        // Timelines completed from the run store: none where the broker keeps every event it took.
        if (!result.monitor.mayMissEvents) expect(result.monitor.reconciled).toBe(0);
        expect(result.monitor.reconciled).toBeGreaterThanOrEqual(0);
        if (fault === 'kill-worker-manager' || fault === 'pause-worker-manager') {
          // The victim held commands when the fault hit (the scenario waits for that), and every one
          // of them was delivered again to another replica, which ran it.
          expect(result.heldAtFault).toBeGreaterThan(0);
          expect(result.heldRedoneElsewhere).toBe(result.heldAtFault);
          expect(result.redeliveries).toBeGreaterThan(0);
        }
        if (fault === 'kill-cluster-node') {
          // The cluster showed it took over (the killed node's replica promoted, or a new leader).
          expect(result.failoverMs).toBeGreaterThan(0);
        }
        if (fault === 'pause-worker-manager') {
          // The paused replica's late results were refused and counted (SPEC §9.4): by the
          // orchestrator as duplicates, or by the broker's de-duplication (NATS) before that.
          expect(result.ignoredResults + result.duplicatePublishes).toBeGreaterThan(0);
        }
      },
      // Above the scenario's own bounded waits (start, drain, settle, the collector's and the
      // monitor's counts): a slow machine fails on the wait that names what it waited for, with
      // every process stopped by the scenario, not on Jest's timeout half-way.
      Math.max(720_000, n * 60),
    );
  });
}
