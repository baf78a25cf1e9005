export {
  ACTIVE_RUNS_PER_WORKER_SLOT,
  defaultMaxActiveRuns,
  MIN_DEFAULT_ACTIVE_RUNS,
  startEmbedded,
} from './embedded-stack';
export type { EmbeddedOptions, EmbeddedStack } from './embedded-stack';
