/**
 * Order sagas (2,000 by default, FAULT_N to change it) across 1 orchestrator and 3
 * worker-managers, each its own OS process, over a private redis-server with 3 partitions; one
 * fault per test; SPEC §9 invariants checked after. Twice: with the AOF fsynced on every write,
 * and with the production setting (fsync every second).
 */
import { redisUnderTest } from './backends-under-test';
import { describeFaults } from './describe-faults';

describeFaults(redisUnderTest('durable'));
// Only the broker's own crash depends on how it keeps what it acknowledged.
describeFaults(redisUnderTest('production'), ['kill-broker']);
