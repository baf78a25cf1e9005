import { workerRegistryConformance } from '@multiagents/testing';
import { MemoryWorkerRegistry } from './memory-worker-registry';

workerRegistryConformance('memory', async () => ({ registry: new MemoryWorkerRegistry() }));
