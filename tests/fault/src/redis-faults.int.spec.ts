/**
 * Issue 3 item 6: 2,000 order sagas across 1 orchestrator and 3 worker-managers, each its own OS
 * process, over a private redis-server; one fault per test; SPEC §9 invariants 1–4 checked after.
 */
import { redisUnderTest } from './backends-under-test';
import { describeFaults } from './describe-faults';

describeFaults(redisUnderTest);
