import { timelineStoreConformance } from '@multiagents/testing';
import { MemoryTimelineStore } from './memory-timeline-store';

timelineStoreConformance('memory', async () => {
  const store = new MemoryTimelineStore();
  // One process: a second replica is the same store.
  return { store };
});
