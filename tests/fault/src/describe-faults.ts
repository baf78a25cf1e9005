/// <reference types="jest" />
import { buildServices, runFaultScenario, type BackendUnderTest, type Fault } from './fault-scenario';

const FAULTS: readonly Fault[] = [
  'kill-worker-manager',
  'kill-orchestrator',
  'kill-broker',
  'pause-worker-manager',
];
const N = 2_000;

/** The same fault tests for every backend. */
export function describeFaults(backend: BackendUnderTest): void {
  describe(`${backend.name}: faults with real processes`, () => {
    beforeAll(() => buildServices(), 300_000);

    it.each(FAULTS)(
      '%s: every run ends once, in the right state, effects once, nothing pending',
      async (fault) => {
        const result = await runFaultScenario(backend, fault, N);
        const { problems, ...summary } = result;
        // The recovery numbers are part of the report (issue 3/5 closing notes).
        process.stdout.write(`fault-test ${JSON.stringify(summary)}\n`);
        expect(problems.slice(0, 20)).toEqual([]);
        // A run that "passes" because nothing happened does not pass: every order finished.
        expect(result.completed).toBe(N * 0.9);
        expect(result.compensated).toBe(N * 0.1);
        expect(result.faultEvidence).not.toBe('');
        if (fault === 'kill-worker-manager' || fault === 'pause-worker-manager') {
          // The victim held commands when the fault hit (the scenario waits for that), and every one
          // of them was delivered again to another replica, which ran it.
          expect(result.heldAtFault).toBeGreaterThan(0);
          expect(result.heldRedoneElsewhere).toBe(result.heldAtFault);
          expect(result.redeliveries).toBeGreaterThan(0);
        }
        if (fault === 'pause-worker-manager') {
          // The paused replica's late results were refused and counted (SPEC §9.4): by the
          // orchestrator as duplicates, or by the broker's de-duplication (NATS) before that.
          expect(result.ignoredResults + result.duplicatePublishes).toBeGreaterThan(0);
        }
      },
      240_000,
    );
  });
}
