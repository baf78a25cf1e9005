/**
 * The brokers' own clusters (issue 13): order sagas across 1 orchestrator and 3 worker-managers
 * (separate processes) over a Redis Cluster of 3 masters + 3 replicas and over a 3-node JetStream
 * cluster with R3 streams and buckets; mid-run, one master (its replica takes over) or the bus
 * stream's leader is killed -9. SPEC §9 invariants checked after; the recovery time is printed.
 *
 * CI runs 300 orders per cluster; `FAULT_CLUSTER_N=3000 npx jest tests/fault/src/cluster-faults`
 * runs a larger batch.
 */
import { natsClusterUnderTest, redisClusterUnderTest } from './backends-under-test';
import { describeFaults } from './describe-faults';

const N = Number(process.env['FAULT_CLUSTER_N'] ?? '300');

describeFaults(redisClusterUnderTest(), ['kill-cluster-node'], N);
describeFaults(natsClusterUnderTest(), ['kill-cluster-node'], N);
